//! Random identifiers, from the platform's CSPRNG (getrandom's WebCrypto backend).

/// `bytes` random bytes as lowercase hex.
pub fn hex_token(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)?;
    Ok(hex::encode(buffer))
}
