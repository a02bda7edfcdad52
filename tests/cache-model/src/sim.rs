// SPDX-License-Identifier: GPL-2.0

//! The hardware: memory, a CPU write-back cache, and devices.
//!
//! Every write stores a fresh, ever-increasing value, so "newer" is "larger"
//! and the latest value of each word (`truth`) is known. A read that does
//! not return `truth` is stale; a write-back or invalidate that destroys the
//! only copy of a `truth` value is a lost write.
//!
//! A device whose mappings bounce (swiotlb) never touches the buffer: it
//! reads and writes its own *slot*, a private copy of every word, and the
//! DMA API copies between the buffer and the slot with the CPU, through
//! its cache: [`Machine::bounce_in`] (buffer to slot, a CPU read) and
//! [`Machine::bounce_out`] (slot to buffer, a CPU write of every word). A
//! copy out that puts back a value older than the word's `truth` is a lost
//! write; a slot read that does not return `truth` is stale.

/// Cache lines in the simulated buffer.
pub const LINES: usize = 3;
/// Words per cache line (more than one, so partial-line writes exist).
pub const WORDS_PER_LINE: usize = 2;
/// Words in the buffer.
pub const WORDS: usize = LINES * WORDS_PER_LINE;
/// Bytes per line, for counting maintenance the way the kernel does.
pub const LINE_BYTES: u64 = 64;
/// Bytes in the buffer.
pub const BUFFER_BYTES: u64 = LINES as u64 * LINE_BYTES;

/// State of one CPU cache line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineState {
    Invalid,
    Clean,
    Dirty,
}

#[derive(Clone, Copy, Debug)]
struct Line {
    state: LineState,
    data: [u64; WORDS_PER_LINE],
}

/// A correctness failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// The CPU read an old value.
    StaleCpuRead { word: usize, got: u64, want: u64 },
    /// A device read an old value.
    StaleDeviceRead {
        coherent: bool,
        word: usize,
        got: u64,
        want: u64,
    },
    /// The latest value of a word was destroyed.
    LostWrite {
        word: usize,
        value: u64,
        how: &'static str,
    },
}

/// The bounce slot of a mapped device whose mappings bounce.
#[derive(Clone, Copy, Debug)]
struct Slot {
    data: [u64; WORDS],
    /// The mapping lets the device write: the slot is copied back into the
    /// buffer at unmap, so it may hold the only copy of a `truth` value.
    copied_back: bool,
}

/// Memory, the CPU cache, bounce slots, and the record of what is true.
pub struct Machine {
    memory: [u64; WORDS],
    cache: [Line; LINES],
    truth: [u64; WORDS],
    /// Per device number: its bounce slot while it is mapped.
    slots: Vec<Option<Slot>>,
    next: u64,
    pub violations: Vec<Violation>,
}

fn line_of(word: usize) -> (usize, usize) {
    (word / WORDS_PER_LINE, word % WORDS_PER_LINE)
}

impl Default for Machine {
    fn default() -> Self {
        Self::new()
    }
}

impl Machine {
    /// A buffer just allocated with `__GFP_ZERO`: memory holds old contents
    /// and the zeroes sit in dirty CPU cache lines.
    pub fn new() -> Self {
        let mut memory = [0; WORDS];
        let mut truth = [0; WORDS];
        let mut cache = [Line {
            state: LineState::Dirty,
            data: [0; WORDS_PER_LINE],
        }; LINES];
        for word in 0..WORDS {
            memory[word] = 1 + word as u64; // someone else's old data
            truth[word] = 100 + word as u64; // the zeroes
            let (line, offset) = line_of(word);
            cache[line].data[offset] = truth[word];
        }
        Self {
            memory,
            cache,
            truth,
            slots: Vec::new(),
            next: 1000,
            violations: Vec::new(),
        }
    }

    /// A buffer from the page pool: zeroed, then cleaned, so memory holds
    /// the zeroes and every cached line is a clean copy of memory.
    pub fn cleaned() -> Self {
        let mut machine = Self::new();
        for line in 0..LINES {
            machine.write_back(line);
            machine.cache[line].state = LineState::Clean;
        }
        machine
    }

    /// A buffer flushed at allocation (the uncached heap's): memory holds
    /// the zeroes, the cache no line of it.
    pub fn flushed() -> Self {
        let mut machine = Self::cleaned();
        for line in 0..LINES {
            machine.cache[line].state = LineState::Invalid;
        }
        machine
    }

    /// The CPU reads a word through a write-combined mapping: from memory.
    pub fn cpu_read_uncached(&mut self, word: usize) {
        let got = self.memory[word];
        if got != self.truth[word] {
            self.violations.push(Violation::StaleCpuRead {
                word,
                got,
                want: self.truth[word],
            });
        }
    }

    /// The CPU writes a word through a write-combined mapping: to memory;
    /// a line the cache holds keeps the older value.
    pub fn cpu_write_uncached(&mut self, word: usize) {
        let value = self.fresh();
        self.memory[word] = value;
        self.truth[word] = value;
    }

    fn fresh(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Writes a line back to memory, flagging newer memory it overwrites.
    fn write_back(&mut self, line: usize) {
        for offset in 0..WORDS_PER_LINE {
            let word = line * WORDS_PER_LINE + offset;
            let value = self.cache[line].data[offset];
            if value < self.memory[word] {
                self.violations.push(Violation::LostWrite {
                    word,
                    value: self.memory[word],
                    how: "overwritten by a write-back of an older line",
                });
            }
            self.memory[word] = value;
        }
    }

    fn fill(&mut self, line: usize) {
        let base = line * WORDS_PER_LINE;
        self.cache[line]
            .data
            .copy_from_slice(&self.memory[base..base + WORDS_PER_LINE]);
        self.cache[line].state = LineState::Clean;
    }

    /// The value the CPU sees for a word (a missing line is filled).
    fn cpu_load(&mut self, word: usize) -> u64 {
        let (line, offset) = line_of(word);
        if self.cache[line].state == LineState::Invalid {
            self.fill(line);
        }
        self.cache[line].data[offset]
    }

    /// The CPU stores a word (write-allocate: a missing line is filled).
    fn cpu_store(&mut self, word: usize, value: u64) {
        let (line, offset) = line_of(word);
        if self.cache[line].state == LineState::Invalid {
            self.fill(line);
        }
        self.cache[line].data[offset] = value;
        self.cache[line].state = LineState::Dirty;
    }

    /// The CPU reads a word through its cache.
    pub fn cpu_read(&mut self, word: usize) {
        let got = self.cpu_load(word);
        if got != self.truth[word] {
            self.violations.push(Violation::StaleCpuRead {
                word,
                got,
                want: self.truth[word],
            });
        }
    }

    /// The CPU writes a word (write-allocate: a missing line is filled).
    pub fn cpu_write(&mut self, word: usize) {
        let value = self.fresh();
        self.cpu_store(word, value);
        self.truth[word] = value;
    }

    fn slot(&mut self, dev: usize) -> &mut Slot {
        self.slots
            .get_mut(dev)
            .and_then(Option::as_mut)
            .expect("a bounce slot is used only while its device is mapped")
    }

    /// The DMA API copies the buffer into `dev`'s bounce slot with the CPU
    /// (at map, or when syncing for the device); `copied_back` if the
    /// mapping lets the device write. What the CPU sees is copied, stale or
    /// not: the slot is checked when the device reads it.
    pub fn bounce_in(&mut self, dev: usize, copied_back: bool) {
        let mut data = [0; WORDS];
        for (word, value) in data.iter_mut().enumerate() {
            *value = self.cpu_load(word);
        }
        if self.slots.len() <= dev {
            self.slots.resize(dev + 1, None);
        }
        self.slots[dev] = Some(Slot { data, copied_back });
    }

    /// The DMA API copies `dev`'s bounce slot into the buffer with the CPU:
    /// every word is written through the cache. Putting back a value older
    /// than the word's latest one destroys that one.
    pub fn bounce_out(&mut self, dev: usize) {
        let data = self.slot(dev).data;
        for (word, &value) in data.iter().enumerate() {
            if value < self.truth[word] {
                self.violations.push(Violation::LostWrite {
                    word,
                    value: self.truth[word],
                    how: "overwritten by a bounce copy of an older slot",
                });
            }
            self.cpu_store(word, value);
        }
    }

    /// `dev` is unmapped: its bounce slot is freed.
    pub fn release_slot(&mut self, dev: usize) {
        if let Some(slot) = self.slots.get_mut(dev) {
            *slot = None;
        }
    }

    /// A device whose mappings bounce reads a word of its slot.
    pub fn slot_read(&mut self, dev: usize, word: usize) {
        let got = self.slot(dev).data[word];
        if got != self.truth[word] {
            self.violations.push(Violation::StaleDeviceRead {
                coherent: false,
                word,
                got,
                want: self.truth[word],
            });
        }
    }

    /// A device whose mappings bounce writes a word of its slot.
    pub fn slot_write(&mut self, dev: usize, word: usize) {
        let value = self.fresh();
        self.slot(dev).data[word] = value;
        self.truth[word] = value;
    }

    /// A device reads a word: from memory, or through a snoop if coherent,
    /// which any copy the CPU cache holds may serve, clean ones too (some
    /// interconnects pass clean data; KVM invalidates before coherent I/O
    /// for the same reason).
    pub fn device_read(&mut self, coherent: bool, word: usize) {
        let (line, offset) = line_of(word);
        let got = if coherent && self.cache[line].state != LineState::Invalid {
            self.cache[line].data[offset]
        } else {
            self.memory[word]
        };
        if got != self.truth[word] {
            self.violations.push(Violation::StaleDeviceRead {
                coherent,
                word,
                got,
                want: self.truth[word],
            });
        }
    }

    /// A device writes a word to memory. A coherent device's write first
    /// takes the line from the CPU (writing it back if dirty) and leaves
    /// the CPU without a copy.
    pub fn device_write(&mut self, coherent: bool, word: usize) {
        let (line, _) = line_of(word);
        if coherent {
            if self.cache[line].state == LineState::Dirty {
                self.write_back(line);
            }
            self.cache[line].state = LineState::Invalid;
        }
        let value = self.fresh();
        self.memory[word] = value;
        self.truth[word] = value;
    }

    /// The cache evicts a line on its own, writing it back if dirty.
    pub fn evict(&mut self, line: usize) {
        if self.cache[line].state == LineState::Dirty {
            self.write_back(line);
        }
        self.cache[line].state = LineState::Invalid;
    }

    /// The CPU fills a line speculatively.
    pub fn speculative_fill(&mut self, line: usize) {
        if self.cache[line].state == LineState::Invalid {
            self.fill(line);
        }
    }

    /// Clean: write back every dirty line, keep it as clean.
    pub fn clean(&mut self) {
        self.clean_lines(0..LINES);
    }

    /// Clean of some lines only.
    pub fn clean_lines(&mut self, lines: std::ops::Range<usize>) {
        for line in lines {
            if self.cache[line].state == LineState::Dirty {
                self.write_back(line);
                self.cache[line].state = LineState::Clean;
            }
        }
    }

    /// Invalidate: drop every line, dirty or not.
    pub fn invalidate(&mut self) {
        self.invalidate_lines(0..LINES);
    }

    /// Invalidate of some lines only.
    pub fn invalidate_lines(&mut self, lines: std::ops::Range<usize>) {
        for line in lines {
            if self.cache[line].state == LineState::Dirty {
                for offset in 0..WORDS_PER_LINE {
                    let word = line * WORDS_PER_LINE + offset;
                    let value = self.cache[line].data[offset];
                    if value == self.truth[word] && self.memory[word] != value {
                        self.violations.push(Violation::LostWrite {
                            word,
                            value,
                            how: "dropped by an invalidate of a dirty line",
                        });
                    }
                }
            }
            self.cache[line].state = LineState::Invalid;
        }
    }

    /// Whether any line is dirty (for the ground-truth oracle).
    pub fn any_dirty(&self) -> bool {
        self.cache.iter().any(|l| l.state == LineState::Dirty)
    }

    /// Whether the CPU holds a copy of `line` that is older than memory
    /// (for the ground-truth oracle).
    pub fn line_is_stale(&self, line: usize) -> bool {
        let l = &self.cache[line];
        l.state != LineState::Invalid
            && (0..WORDS_PER_LINE).any(|o| l.data[o] < self.memory[line * WORDS_PER_LINE + o])
    }

    /// Whether the CPU holds any copy older than memory.
    pub fn any_stale(&self) -> bool {
        (0..LINES).any(|l| self.line_is_stale(l))
    }

    /// At the end of a sequence: every word's latest value must still exist
    /// in memory, in a dirty line, or in the slot of a mapped device that
    /// will copy it back.
    pub fn check_nothing_lost(&mut self) {
        for word in 0..WORDS {
            let (line, offset) = line_of(word);
            let l = self.cache[line];
            let in_cache = l.state == LineState::Dirty && l.data[offset] == self.truth[word];
            let in_slot = self
                .slots
                .iter()
                .flatten()
                .any(|s| s.copied_back && s.data[word] == self.truth[word]);
            if self.memory[word] != self.truth[word] && !in_cache && !in_slot {
                self.violations.push(Violation::LostWrite {
                    word,
                    value: self.truth[word],
                    how: "missing at the end of the sequence",
                });
            }
        }
    }
}
