//! The simulated network: directed links between endpoints (0 is the
//! arbiter, 1..=n the nodes, n+1..=2n second processes speaking as a node), each up or down, with seeded loss, duplication
//! and delay (so reordering). Every drop is reported so the checker knows
//! which nodes were disturbed.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Endpoint 0 is the arbiter.
pub type Endpoint = u32;
pub const ARBITER: Endpoint = 0;

#[derive(Debug, Clone)]
pub struct Network {
    n: u32,
    /// `down[from][to]`
    down: Vec<Vec<bool>>,
    pub loss: f64,
    pub duplicate: f64,
    pub min_delay_us: u64,
    pub max_delay_us: u64,
    /// Probability that a message is slowed to up to `slow_delay_us`.
    pub slow: f64,
    pub slow_delay_us: u64,
}

/// What happened to one message.
pub enum Delivery {
    Dropped,
    /// Deliver after each of these delays (two when duplicated).
    After(Vec<u64>),
}

impl Network {
    /// Nodes `1..=n`; endpoints `n + 1..=2n` are left for second processes
    /// speaking as a node (see `clone_of`).
    pub fn new(n: u32) -> Self {
        let size = 2 * n as usize + 1;
        Network {
            n,
            down: vec![vec![false; size]; size],
            loss: 0.0,
            duplicate: 0.0,
            min_delay_us: 100,
            max_delay_us: 2_000,
            slow: 0.0,
            slow_delay_us: 40_000,
        }
    }

    /// The highest node endpoint.
    pub fn capacity(&self) -> u32 {
        self.n
    }

    /// The endpoint of a second process speaking as `node` (a duplicate
    /// identity: a cloned machine or a copied certificate).
    pub fn clone_of(&self, node: u32) -> Endpoint {
        self.n + node
    }

    /// The node an endpoint speaks as.
    pub fn speaks_as(&self, endpoint: Endpoint) -> u32 {
        if endpoint > self.n {
            endpoint - self.n
        } else {
            endpoint
        }
    }

    pub fn set_link(&mut self, from: Endpoint, to: Endpoint, up: bool) {
        self.down[from as usize][to as usize] = !up;
    }

    pub fn is_up(&self, from: Endpoint, to: Endpoint) -> bool {
        !self.down[from as usize][to as usize]
    }

    pub fn heal(&mut self) {
        for row in &mut self.down {
            row.fill(false);
        }
        self.loss = 0.0;
        self.duplicate = 0.0;
        self.slow = 0.0;
    }

    /// Cut both directions between every member of `side` and every other
    /// endpoint not in `side`.
    pub fn split(&mut self, side: &[Endpoint]) {
        for a in 0..=self.n {
            for b in 0..=self.n {
                if side.contains(&a) != side.contains(&b) {
                    self.set_link(a, b, false);
                }
            }
        }
    }

    pub fn send(&self, rng: &mut ChaCha8Rng, from: Endpoint, to: Endpoint) -> Delivery {
        if !self.is_up(from, to) || (self.loss > 0.0 && rng.random_bool(self.loss)) {
            return Delivery::Dropped;
        }
        let delay = |rng: &mut ChaCha8Rng| {
            if self.slow > 0.0 && rng.random_bool(self.slow) {
                rng.random_range(self.max_delay_us..=self.slow_delay_us)
            } else {
                rng.random_range(self.min_delay_us..=self.max_delay_us)
            }
        };
        let first = delay(rng);
        if self.duplicate > 0.0 && rng.random_bool(self.duplicate) {
            let second = delay(rng);
            Delivery::After(vec![first, second])
        } else {
            Delivery::After(vec![first])
        }
    }
}
