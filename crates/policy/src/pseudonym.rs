//! Keyed pseudonyms: HMAC-SHA256 under a per-device secret key.
//!
//! Without the key, a pseudonym cannot be tied back to the serial number; erasing the key
//! (a later `camagent erase`) rotates every pseudonym the device ever used. The key's file is
//! the agent's (`camagent::policy::key_file`).

use ring::hmac;

/// Bytes in a key.
pub const KEY_LEN: usize = 32;

#[derive(Clone)]
pub struct PseudonymKey(hmac::Key);

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(<secret>)")
    }
}

impl PseudonymKey {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// A key of its own for `label` (a purpose id): pseudonyms made with it cannot be linked
    /// to those of the device key or of other labels without the device key itself.
    pub fn derive(&self, label: &str) -> Self {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(b"camagent/purpose-key\0");
        ctx.update(label.as_bytes());
        Self::from_bytes(ctx.sign().as_ref())
    }

    /// A stable, topic-safe pseudonym of `input` within `scope` (24 hex digits, 96 bits).
    pub fn pseudonym(&self, scope: &str, input: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(scope.as_bytes());
        ctx.update(&[0]);
        ctx.update(input);
        let tag = ctx.sign();
        camagent_wire::hex::encode(&tag.as_ref()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_keys_give_unlinkable_pseudonyms() {
        let k1 = PseudonymKey::from_bytes(&[1; KEY_LEN]);
        let k2 = PseudonymKey::from_bytes(&[2; KEY_LEN]);
        assert_ne!(k1.pseudonym("a", b"SN"), k1.pseudonym("b", b"SN"));
        assert_ne!(k1.pseudonym("a", b"SN"), k2.pseudonym("a", b"SN"));
    }
}
