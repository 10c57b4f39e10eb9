//! `breakglass`: the responder's command-line client.

fn main() -> std::process::ExitCode {
    breakglass_client::cli::main()
}
