//! Which AWS a command talks to: the local emulator (started and kept), an endpoint, or real AWS.

use crate::*;

/// The AWS configuration for `target`; for the local target, starts the emulator once and reuses it.
pub(crate) async fn connect(cli: &Cli, target: &Target) -> Result<SdkConfig, Failure> {
    match target {
        Target::Aws => {
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            if config.region().is_none() {
                return Err(failure(
                    2,
                    "no AWS region: set AWS_REGION (or a region in your profile) for --aws",
                ));
            }
            Ok(config)
        }
        Target::Endpoint(url) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(failure(
                    2,
                    format!("--endpoint {url:?}: expected an http:// or https:// URL"),
                ));
            }
            Ok(Emulator::at(url).sdk_config())
        }
        Target::Local => {
            let record = emulator_record(&cli.state_dir);
            if let Some(d) = read_record(&record)
                && d.is_alive().await
            {
                return Ok(Emulator::at(&d.endpoint).sdk_config());
            }
            eprintln!(
                "starting a local AWS emulator (kept running; `production emulator stop` removes it)"
            );
            let emulator = Emulator::start()
                .await
                .map_err(|e| failure(1, format!("no local AWS emulator could be started: {e}")))?;
            let detached = emulator.detach();
            std::fs::create_dir_all(&cli.state_dir)
                .and_then(|()| {
                    std::fs::write(
                        &record,
                        serde_json::to_vec_pretty(&detached).unwrap_or_default(),
                    )
                })
                .map_err(|e| {
                    failure(
                        1,
                        format!("recording the emulator in {}: {e}", record.display()),
                    )
                })?;
            eprintln!("local AWS emulator at {}", detached.endpoint);
            Ok(Emulator::at(&detached.endpoint).sdk_config())
        }
    }
}

pub(crate) fn emulator_record(state_dir: &Path) -> PathBuf {
    state_dir.join("emulator.json")
}

pub(crate) fn read_record(path: &Path) -> Option<Detached> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub(crate) fn stop_emulator(cli: &Cli) -> Result<u8, Failure> {
    let record = emulator_record(&cli.state_dir);
    let Some(d) = read_record(&record) else {
        if !cli.json {
            println!("no local emulator recorded in {}", cli.state_dir.display());
        } else {
            println!("{}", json!({"command": "emulator stop", "stopped": false}));
        }
        return Ok(0);
    };
    d.stop()
        .map_err(|e| failure(1, format!("stopping the emulator: {e}")))?;
    std::fs::remove_file(&record)
        .map_err(|e| failure(1, format!("removing {}: {e}", record.display())))?;
    // Local state describes resources that went with the emulator.
    if let Ok(entries) = std::fs::read_dir(&cli.state_dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("local-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    if cli.json {
        println!(
            "{}",
            json!({"command": "emulator stop", "stopped": true, "endpoint": d.endpoint})
        );
    } else {
        println!(
            "stopped the local emulator at {} and removed its local state",
            d.endpoint
        );
    }
    Ok(0)
}
