//! Short tool calls whose output is captured whole: `mount`, `mkfs.btrfs`, `btrfs`,
//! `cryptsetup`. They run to their end; a failure names the tool and the tail of its stderr.
//! (The long-running tools a stage drives, with progress lines and stop requests, go through
//! `crate::process` instead.)

use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{tool} failed ({status}){}", stderr_tail(.stderr))]
    Failed {
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run {tool}: {source} (is it installed? `backupctl hello` checks)")]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
}

fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim().lines().rev().take(4).collect();
    if lines.is_empty() {
        String::new()
    } else {
        let lines: Vec<&str> = lines.into_iter().rev().collect();
        format!(": {}", lines.join(" / "))
    }
}

/// Runs a tool to its end, capturing its output; a failure names the tool and its stderr.
/// Secrets are never arguments: they go by file (`--key-file`, `credentials=`).
pub fn run(command: &mut Command) -> Result<String, ToolError> {
    let tool = command.get_program().to_string_lossy().into_owned();
    tracing::debug!(
        "running {tool} {}",
        command
            .get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| ToolError::Spawn {
            tool: tool.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(ToolError::Failed {
            tool,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}
