// SPDX-License-Identifier: GPL-2.0

//! The hardware: memory, a CPU write-back cache, and devices.
//!
//! Every write stores a fresh, ever-increasing value, so "newer" is "larger"
//! and the latest value of each word (`truth`) is known. A read that does
//! not return `truth` is stale; a write-back or invalidate that destroys the
//! only copy of a `truth` value is a lost write.

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

/// Memory, the CPU cache, and the record of what is true.
pub struct Machine {
    memory: [u64; WORDS],
    cache: [Line; LINES],
    truth: [u64; WORDS],
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
            next: 1000,
            violations: Vec::new(),
        }
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

    /// The CPU reads a word through its cache.
    pub fn cpu_read(&mut self, word: usize) {
        let (line, offset) = line_of(word);
        if self.cache[line].state == LineState::Invalid {
            self.fill(line);
        }
        let got = self.cache[line].data[offset];
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
        let (line, offset) = line_of(word);
        if self.cache[line].state == LineState::Invalid {
            self.fill(line);
        }
        let value = self.fresh();
        self.cache[line].data[offset] = value;
        self.cache[line].state = LineState::Dirty;
        self.truth[word] = value;
    }

    /// A device reads a word: from memory, or through a snoop if coherent.
    pub fn device_read(&mut self, coherent: bool, word: usize) {
        let (line, offset) = line_of(word);
        let got = if coherent && self.cache[line].state == LineState::Dirty {
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
        for line in 0..LINES {
            if self.cache[line].state == LineState::Dirty {
                self.write_back(line);
                self.cache[line].state = LineState::Clean;
            }
        }
    }

    /// Invalidate: drop every line, dirty or not.
    pub fn invalidate(&mut self) {
        for line in 0..LINES {
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
    /// in memory or in a dirty line.
    pub fn check_nothing_lost(&mut self) {
        for word in 0..WORDS {
            let (line, offset) = line_of(word);
            let l = self.cache[line];
            let in_cache = l.state == LineState::Dirty && l.data[offset] == self.truth[word];
            if self.memory[word] != self.truth[word] && !in_cache {
                self.violations.push(Violation::LostWrite {
                    word,
                    value: self.truth[word],
                    how: "missing at the end of the sequence",
                });
            }
        }
    }
}
