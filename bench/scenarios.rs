// SPDX-License-Identifier: GPL-2.0

//! The benchmark scenarios as data, shared by the guest (which plays them
//! on real buffers through the importer test driver) and the host report
//! (which computes their minimum with the cache model). Pure: no I/O.

/// Direction of a device mapping or a CPU access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Device reads / CPU writes (`DMA_TO_DEVICE`, `DMA_BUF_SYNC_WRITE`).
    ToDevice,
    /// Device writes / CPU reads (`DMA_FROM_DEVICE`, `DMA_BUF_SYNC_READ`).
    FromDevice,
    /// Both.
    Bidirectional,
}

/// One step of a scenario. Devices are indices into [`Scenario::devices`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Attach (if needed) and map the device.
    Map(usize, Dir),
    /// Unmap the device (it stays attached).
    Unmap(usize),
    /// A CPU access bracket: SYNC START then SYNC END.
    Cpu(Dir),
    /// A CPU access bracket of bytes `.1..1 + .2` only: the heap's range
    /// SYNC (`RDH_IOCTL_SYNC_RANGE`) on ours, a whole-buffer SYNC on the
    /// system heap (which has no range interface).
    CpuRange(Dir, u64, u64),
    /// The device completes a job of this direction, declared through the
    /// explicit fence API (ours) or the reservation object (system heap),
    /// and its fence signals.
    Job(usize, Dir),
}

/// A device of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    pub coherent: bool,
}

/// A named sequence of steps, repeated for `frames` frames.
pub struct Scenario {
    pub name: &'static str,
    pub what: &'static str,
    pub devices: &'static [Device],
    /// Steps before the first frame (long-lived mappings).
    pub setup: &'static [Op],
    /// Steps of frame `n` (0-based), as a few runs of steps.
    pub frame: fn(usize) -> &'static [&'static [Op]],
    pub frames: usize,
}

impl Scenario {
    /// Every step: the setup, then each frame's.
    pub fn steps(&self) -> impl Iterator<Item = &'static Op> + '_ {
        self.setup
            .iter()
            .chain((0..self.frames).flat_map(|n| (self.frame)(n).iter().copied().flatten()))
    }
}

const NC: Device = Device { coherent: false };
const COHERENT: Device = Device { coherent: true };

const PIPELINE: &[Op] = &[
    Op::Map(0, Dir::FromDevice),
    Op::Unmap(0),
    Op::Map(1, Dir::Bidirectional),
    Op::Unmap(1),
    Op::Map(2, Dir::ToDevice),
    Op::Unmap(2),
];

const READBACK: &[Op] = &[Op::Cpu(Dir::FromDevice)];

const FILL_AND_SHOW: &[Op] = &[
    Op::Cpu(Dir::ToDevice),
    Op::Map(0, Dir::ToDevice),
    Op::Unmap(0),
];

const THREE_MAPPED: &[Op] = &[
    Op::Map(0, Dir::Bidirectional),
    Op::Map(1, Dir::Bidirectional),
    Op::Map(2, Dir::Bidirectional),
];

const FENCED_FRAME: &[Op] = &[
    Op::Job(0, Dir::Bidirectional),
    Op::Job(1, Dir::Bidirectional),
    Op::Job(2, Dir::Bidirectional),
    Op::Cpu(Dir::Bidirectional),
];

const ROI: &[Op] = &[
    Op::Map(0, Dir::FromDevice),
    Op::Unmap(0),
    Op::CpuRange(Dir::FromDevice, 4 << 20, 64 << 10),
];

const PATCH: &[Op] = &[Op::CpuRange(Dir::ToDevice, 1 << 20, 4 << 10)];

/// Every scenario, in report order.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "S1",
        what: "camera -> GPU -> display, map/unmap per frame",
        devices: &[NC, NC, NC],
        setup: &[],
        frame: |_| &[PIPELINE],
        frames: 60,
    },
    Scenario {
        name: "S2",
        what: "S1 with a CPU readback every 4th frame",
        devices: &[NC, NC, NC],
        setup: &[],
        frame: |n| {
            if n % 4 == 3 {
                &[PIPELINE, READBACK]
            } else {
                &[PIPELINE]
            }
        },
        frames: 60,
    },
    Scenario {
        name: "S3",
        what: "CPU fills, a non-coherent device reads",
        devices: &[NC],
        setup: &[],
        frame: |_| &[FILL_AND_SHOW],
        frames: 60,
    },
    Scenario {
        name: "S4",
        what: "three importers keep it mapped; CPU read-write cycles",
        devices: &[NC, NC, NC],
        setup: THREE_MAPPED,
        frame: |_| &[&[Op::Cpu(Dir::Bidirectional)]],
        frames: 60,
    },
    Scenario {
        name: "S5",
        what: "CPU only: SYNC START/END pairs",
        devices: &[],
        setup: &[],
        frame: |_| &[&[Op::Cpu(Dir::Bidirectional)]],
        frames: 1000,
    },
    Scenario {
        name: "S6",
        what: "S1 with coherent devices",
        devices: &[COHERENT, COHERENT, COHERENT],
        setup: &[],
        frame: |_| &[PIPELINE],
        frames: 60,
    },
    Scenario {
        name: "S7",
        what: "S4 with a write fence per device job",
        devices: &[NC, NC, NC],
        setup: THREE_MAPPED,
        frame: |_| &[FENCED_FRAME],
        frames: 60,
    },
    Scenario {
        name: "S8",
        what: "camera writes; the CPU reads a 64 KiB region of interest",
        devices: &[NC],
        setup: &[],
        frame: |_| &[ROI],
        frames: 60,
    },
    Scenario {
        name: "S9",
        what: "the CPU patches 4 KiB of a frame a display keeps mapped",
        devices: &[NC],
        setup: &[Op::Map(0, Dir::ToDevice)],
        frame: |_| &[PATCH],
        frames: 60,
    },
];

/// Buffer size of every scenario.
pub const BUFFER_BYTES: u64 = 8 << 20;

/// The width of the longest `what`, so tables keep their columns aligned.
pub const WHAT_WIDTH: usize = {
    let mut width = 0;
    let mut i = 0;
    while i < SCENARIOS.len() {
        if SCENARIOS[i].what.len() > width {
            width = SCENARIOS[i].what.len();
        }
        i += 1;
    }
    width
};
