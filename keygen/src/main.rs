//! `breakglass-keygen`: offline keys, paper backups and the signed roster.

fn main() -> std::process::ExitCode {
    breakglass_keygen::cli::main()
}
