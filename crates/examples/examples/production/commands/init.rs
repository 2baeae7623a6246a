//! `production init`: writes a commented config file to start from.

use crate::*;

/// Writes the default config file, refusing to overwrite one unless `force`.
pub(crate) fn init(cli: &Cli, force: bool) -> Result<u8, Failure> {
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("platform.toml"));
    if path.exists() && !force {
        return Err(failure(
            2,
            format!("{} exists; pass --force to overwrite it", path.display()),
        ));
    }
    std::fs::write(&path, examples::config::template())
        .map_err(|e| failure(1, format!("writing {}: {e}", path.display())))?;
    if cli.json {
        println!("{}", json!({"command": "init", "config": path}));
    } else {
        println!(
            "wrote {}: the seed's values, a comment per key; use it with --config {}",
            path.display(),
            path.display()
        );
    }
    Ok(0)
}
