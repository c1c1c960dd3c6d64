//! The host memory a plugin causes, outside its sandbox: [`HostBudget`] counts the bytes the
//! host holds on a plugin's behalf (a batch's effects until they are applied, its counter
//! names), and [`Charge`] is one holding, released when dropped.
//!
//! The limit is the plugin's `host_memory_mib`. Every call into the plugin may pass the host
//! at most what is still free (wasmtime's hostcall fuel, set before each call by
//! [`crate::PluginInstance`]), so nothing the guest returns or passes to an import is copied
//! past the budget: the copy stops, the call fails with reason `host-memory`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes the host holds for one plugin (all its instances and versions).
#[derive(Debug, Default)]
pub struct HostBudget {
    held: AtomicUsize,
}

impl HostBudget {
    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// What a plugin whose budget is `limit` bytes may still cause the host to hold.
    pub fn available(&self, limit: usize) -> usize {
        limit.saturating_sub(self.held())
    }

    /// Holds `bytes` until the returned [`Charge`] is dropped.
    pub fn charge(self: &Arc<HostBudget>, bytes: usize) -> Charge {
        self.held.fetch_add(bytes, Ordering::Relaxed);
        Charge {
            budget: Some(self.clone()),
            bytes,
        }
    }
}

/// Bytes held against a [`HostBudget`]; dropping it gives them back.
#[derive(Debug, Default)]
pub struct Charge {
    budget: Option<Arc<HostBudget>>,
    bytes: usize,
}

impl Charge {
    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Moves `other`'s bytes into this charge (both budgets must be the same plugin's).
    pub fn absorb(&mut self, mut other: Charge) {
        match &self.budget {
            None => *self = other,
            Some(_) => {
                self.bytes += other.bytes;
                other.budget = None;
            }
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_hold_bytes_until_dropped_and_absorb_keeps_one_count() {
        let budget = Arc::new(HostBudget::default());
        let mut group = Charge::default();
        group.absorb(budget.charge(100));
        group.absorb(budget.charge(50));
        assert_eq!(group.bytes(), 150);
        assert_eq!(budget.held(), 150);
        assert_eq!(budget.available(1_000), 850);
        assert_eq!(budget.available(100), 0);
        drop(group);
        assert_eq!(budget.held(), 0);
    }
}
