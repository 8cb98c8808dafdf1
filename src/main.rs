//! The binary: everything lives in the library (`backupctl::cli`).

fn main() -> std::process::ExitCode {
    backupctl::cli::main()
}
