//! Random identifiers, from the platform's CSPRNG (getrandom's WebCrypto backend).

use std::cell::{Cell, OnceCell};

/// `bytes` random bytes as lowercase hex.
pub fn hex_token(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)?;
    Ok(hex::encode(buffer))
}

thread_local! {
    /// 8 random bytes drawn once per isolate: what makes its request ids unique.
    static ISOLATE: OnceCell<String> = const { OnceCell::new() };
    static NEXT: Cell<u32> = const { Cell::new(0) };
}

/// A request id: 24 lowercase hex digits, the isolate's random prefix then a counter. A
/// request id only has to be unique, not secret (it is echoed and logged): one CSPRNG call
/// per isolate instead of one per request. Without randomness, `None`.
pub fn request_id() -> Option<String> {
    let prefix = ISOLATE.with(|cell| {
        if let Some(prefix) = cell.get() {
            return Some(prefix.clone());
        }
        let prefix = hex_token(8).ok()?;
        Some(cell.get_or_init(|| prefix).clone())
    })?;
    let n = NEXT.with(|next| {
        let n = next.get();
        next.set(n.wrapping_add(1));
        n
    });
    Some(format!("{prefix}{n:08x}"))
}
