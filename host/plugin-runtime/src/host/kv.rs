//! `kv`: the plugin's key-value store; writes stay pending until the host commits the call.

use crate::bindings::kv::{Host, KvError};
use crate::kv::KvRefusal;
use crate::state::PluginState;

impl Host for PluginState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.services.kv().get(&key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        let quota = self.caps.limits.kv_quota_bytes;
        match self.services.kv().set(key, value, quota) {
            Ok(()) => Ok(()),
            Err(KvRefusal::Quota) => {
                self.kv_quota_hit = true;
                Err(KvError::QuotaExceeded)
            }
            Err(KvRefusal::BadKey) => Err(KvError::BadKey),
        }
    }

    fn delete(&mut self, key: String) {
        self.services.kv().delete(&key);
    }
}
