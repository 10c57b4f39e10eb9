//! `breakglass-relay`: the store-and-forward relay of a breakglass trust domain.

fn main() -> std::process::ExitCode {
    breakglass_relay::cli::main()
}
