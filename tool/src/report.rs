// SPDX-License-Identifier: GPL-2.0

//! What `--json` prints, one compact line per command: a serde struct per
//! report, its fields in the order of the keys. Values read from debugfs
//! or sysfs are typed by [`Scalar`]. The guest's checks (`guest/src/tool.rs`)
//! read these keys.

pub use rdh::heaps::OpenDmaBuf;
use serde::{Serialize, Serializer};

/// A debugfs or sysfs value: a number if it reads as one, `Y`/`N` and
/// `true`/`false` as booleans, else a string.
pub struct Scalar<'a>(pub &'a str);

impl Serialize for Scalar<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            "Y" | "true" => s.serialize_bool(true),
            "N" | "false" => s.serialize_bool(false),
            v => match v.parse::<i64>() {
                Ok(n) => s.serialize_i64(n),
                Err(_) => s.serialize_str(v),
            },
        }
    }
}

/// `key: value` lines (a debugfs file, the module's parameters) as one
/// object, keys in the lines' order, values as [`Scalar`]s.
pub struct Fields<'a>(pub &'a [(String, String)]);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, Scalar(v))))
    }
}

/// Microseconds to three decimals (nanoseconds) for printing.
pub fn micros(us: f64) -> f64 {
    (us * 1e3).round() / 1e3
}

/// `rdh list --json`.
#[derive(Serialize)]
pub struct List<'a> {
    pub heaps: Vec<ListedHeap<'a>>,
    pub module: Module<'a>,
}

/// A heap of `rdh list`: for ours, the lines of its debugfs `stats` that
/// are there.
#[derive(Serialize)]
pub struct ListedHeap<'a> {
    pub name: &'a str,
    pub ours: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Scalar<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_bytes: Option<Scalar<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffers_allocated: Option<Scalar<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_allocated: Option<Scalar<'a>>,
}

#[derive(Serialize)]
pub struct Module<'a> {
    pub loaded: bool,
    pub parameters: Fields<'a>,
}

/// `rdh alloc --json`.
#[derive(Serialize)]
pub struct Alloc<'a> {
    pub heap: &'a str,
    pub size: u64,
    pub alloc_us: f64,
    pub inode: u64,
    pub fd: i32,
    pub pid: u32,
    pub hold_s: u64,
}

/// `rdh stats --json`.
#[derive(Serialize)]
pub struct Stats<'a> {
    pub heaps: Vec<HeapStats<'a>>,
    pub dmabufs: &'a [OpenDmaBuf],
}

/// One of our heaps' debugfs files; its buffers' with `--buffers`.
#[derive(Serialize)]
pub struct HeapStats<'a> {
    pub name: &'a str,
    pub stats: Fields<'a>,
    pub pool: Fields<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffers: Option<Vec<BufferState<'a>>>,
}

/// A buffer's debugfs file, after its name (the dma-buf's inode).
#[derive(Serialize)]
pub struct BufferState<'a> {
    pub inode: Scalar<'a>,
    #[serde(flatten)]
    pub lines: Fields<'a>,
}

/// A row of `rdh bench alloc --json` (an array of them).
#[derive(Serialize)]
pub struct AllocLatency<'a> {
    pub heap: &'a str,
    /// `cold`, `warm` (ours with the page pool off / filled) or `-`.
    pub pool: &'a str,
    pub size: u64,
    pub iterations: usize,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
}

/// A record of `rdh bench pipeline --json` (an array of them): the bytes
/// are absent where the heap could not be counted.
#[derive(Serialize)]
pub struct Maintenance<'a> {
    pub scenario: &'a str,
    pub heap: &'a str,
    pub policy: &'a str,
    pub frames: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clean_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalidate_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn json(value: &impl Serialize) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn scalars_are_typed_as_before() {
        let kinds = lines(&[
            ("y", "Y"),
            ("n", "N"),
            ("t", "true"),
            ("f", "false"),
            ("num", "-42"),
            ("big", "9223372036854775807"),
            ("huge", "18446744073709551615"),
            ("text", "tracked"),
            ("quote", "a\"b\\c\nd\u{1}"),
        ]);
        assert_eq!(
            json(&Fields(&kinds)),
            r#"{"y":true,"n":false,"t":true,"f":false,"num":-42,"big":9223372036854775807,"huge":"18446744073709551615","text":"tracked","quote":"a\"b\\c\nd\u0001"}"#
        );
    }

    /// The prefixes `rdh_list_shows_our_heaps_policies_and_parameters`
    /// looks for.
    #[test]
    fn list_keeps_the_keys_and_their_order() {
        let params = lines(&[("heap_name", "rdh"), ("sync_policy", "tracked")]);
        let report = List {
            heaps: vec![
                ListedHeap {
                    name: "rdh",
                    ours: true,
                    policy: Some(Scalar("tracked")),
                    live_bytes: Some(Scalar("0")),
                    buffers_allocated: Some(Scalar("3")),
                    bytes_allocated: None,
                },
                ListedHeap {
                    name: "system",
                    ours: false,
                    policy: None,
                    live_bytes: None,
                    buffers_allocated: None,
                    bytes_allocated: None,
                },
            ],
            module: Module {
                loaded: true,
                parameters: Fields(&params),
            },
        };
        assert_eq!(
            json(&report),
            r#"{"heaps":[{"name":"rdh","ours":true,"policy":"tracked","live_bytes":0,"buffers_allocated":3},{"name":"system","ours":false}],"module":{"loaded":true,"parameters":{"heap_name":"rdh","sync_policy":"tracked"}}}"#
        );
    }

    #[test]
    fn alloc_numbers_are_integers_but_the_time() {
        let report = Alloc {
            heap: "rdh",
            size: 1 << 20,
            alloc_us: micros(12.345_678_9),
            inode: 4711,
            fd: 3,
            pid: 42,
            hold_s: 3,
        };
        assert_eq!(
            json(&report),
            r#"{"heap":"rdh","size":1048576,"alloc_us":12.346,"inode":4711,"fd":3,"pid":42,"hold_s":3}"#
        );
    }

    /// `"inode":N,` and `"pid":N,` as `rdh_alloc_holds_a_buffer_that_stats_sees`
    /// looks for them; the buffer's lines after its inode.
    #[test]
    fn stats_put_the_inode_first() {
        let stats = lines(&[("live_bytes", "1048576")]);
        let pool = lines(&[("limit_bytes", "0")]);
        let buffer = lines(&[("size", "1048576"), ("policy", "tracked")]);
        let open = [OpenDmaBuf {
            pid: 42,
            comm: "rdh".into(),
            fd: 3,
            inode: 4711,
            size: 1 << 20,
            exporter: "rdh".into(),
            name: Some("frame-0".into()),
        }];
        let report = Stats {
            heaps: vec![HeapStats {
                name: "rdh",
                stats: Fields(&stats),
                pool: Fields(&pool),
                buffers: Some(vec![BufferState {
                    inode: Scalar("4711"),
                    lines: Fields(&buffer),
                }]),
            }],
            dmabufs: &open,
        };
        assert_eq!(
            json(&report),
            r#"{"heaps":[{"name":"rdh","stats":{"live_bytes":1048576},"pool":{"limit_bytes":0},"buffers":[{"inode":4711,"size":1048576,"policy":"tracked"}]}],"dmabufs":[{"pid":42,"comm":"rdh","fd":3,"inode":4711,"size":1048576,"exporter":"rdh","name":"frame-0"}]}"#
        );
    }

    #[test]
    fn bench_records() {
        let latency = [AllocLatency {
            heap: "rdh",
            pool: "warm",
            size: 65536,
            iterations: 4,
            p50_us: micros(1.5),
            p95_us: micros(2.0),
            p99_us: micros(2.000_4),
        }];
        assert_eq!(
            json(&latency),
            r#"[{"heap":"rdh","pool":"warm","size":65536,"iterations":4,"p50_us":1.5,"p95_us":2.0,"p99_us":2.0}]"#
        );
        let records = [
            Maintenance {
                scenario: "S1",
                heap: "rdh",
                policy: "tracked",
                frames: 8,
                clean_bytes: Some(8 << 20),
                invalidate_bytes: Some(0),
            },
            Maintenance {
                scenario: "S1",
                heap: "system",
                policy: "-",
                frames: 8,
                clean_bytes: None,
                invalidate_bytes: None,
            },
        ];
        assert_eq!(
            json(&records),
            r#"[{"scenario":"S1","heap":"rdh","policy":"tracked","frames":8,"clean_bytes":8388608,"invalidate_bytes":0},{"scenario":"S1","heap":"system","policy":"-","frames":8}]"#
        );
    }
}
