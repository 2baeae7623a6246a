//! `production force-unlock [STACK...]`: removes the locks a dead run left, after asking.

use crate::*;

/// Shows each held lock of `stacks` (the platform's, when none is named), asks, removes them, and
/// checks that none remains.
pub(crate) async fn force_unlock(
    cli: &Cli,
    store: &dyn StateStore,
    platform: &Platform,
    stacks: Vec<String>,
) -> Result<u8, Failure> {
    let stacks = if stacks.is_empty() {
        platform.stack_names().map(str::to_owned).to_vec()
    } else {
        stacks
    };
    let mut held = Vec::new();
    for stack in &stacks {
        platform_core::state::validate_stack_name(stack)
            .map_err(|e| failure(2, format!("force-unlock: {e}")))?;
        if let Some(info) = store.holder(stack).await.map_err(Error::from)? {
            held.push((stack.clone(), info));
        }
    }
    if !cli.json {
        if held.is_empty() {
            println!("no lock is held on {}", stacks.join(", "));
        }
        for (stack, info) in &held {
            println!("{stack}: locked by {}", info.describe());
        }
    }
    if !held.is_empty() && !cli.yes {
        if !std::io::stdin().is_terminal() {
            return Err(failure(
                2,
                "refusing to remove locks without confirmation: no terminal to ask on; pass --yes",
            ));
        }
        eprint!(
            "Remove these locks? A run that still holds one would have its next write refused. Type yes to go on: "
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| failure(1, format!("reading the answer: {e}")))?;
        if answer.trim() != "yes" {
            return Err(failure(1, "not confirmed; no lock was removed"));
        }
    }
    let mut removed = Vec::new();
    for (stack, _) in &held {
        if let Some(info) = store.force_unlock(stack).await.map_err(Error::from)? {
            if !cli.json {
                println!("{stack}: lock removed ({})", info.describe());
            }
            removed.push(json!({"stack": stack, "holder": info}));
        }
    }
    let mut remaining = Vec::new();
    for stack in &stacks {
        if let Some(info) = store.holder(stack).await.map_err(Error::from)? {
            remaining.push((stack.clone(), info));
        }
    }
    if cli.json {
        println!(
            "{}",
            json!({
                "command": "force-unlock",
                "removed": removed,
                "remaining": remaining.iter().map(|(s, i)| json!({"stack": s, "holder": i})).collect::<Vec<_>>(),
            })
        );
    }
    match remaining.first() {
        None => Ok(0),
        Some((stack, info)) => Err(failure(
            1,
            format!("the lock of {stack} is held again, by {}", info.describe()),
        )),
    }
}
