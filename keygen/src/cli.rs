//! The `breakglass-keygen` command line: keys, paper backups and rosters.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use breakglass_protocol::keyfile::SecretKey;
use breakglass_protocol::roster::{self, Channel, Member, Name, Relay, Role, Roster, Timestamp};
use breakglass_protocol::{KeyKind, MemberPublic, Seed, SigningPublic};
use clap::{Args, Parser, Subcommand, ValueEnum};
use zeroize::Zeroizing;

use crate::pincard::PinCard;
use crate::{bip39words, keyio, prompt, rosterfile, slip39};

/// Offline keys, paper backups and the signed roster of a breakglass trust domain.
///
/// Run it on a machine that is not connected to any network.
#[derive(Parser, Debug)]
#[command(name = "breakglass-keygen", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The root key, which signs rosters.
    #[command(subcommand)]
    Root(NewOnly),
    /// A member's key (a person or a monitoring probe).
    #[command(subcommand)]
    Member(MemberCmd),
    /// A relay's identity key.
    #[command(subcommand)]
    Relay(NewOnly),
    /// Print the public key string of a key file.
    Pubkey {
        /// The key file.
        file: PathBuf,
        /// Print the short fingerprint instead.
        #[arg(long)]
        fingerprint: bool,
    },
    /// Paper backups: BIP-39 words and SLIP-39 shares.
    #[command(subcommand)]
    Paper(PaperCmd),
    /// Edit, sign and check the roster.
    #[command(subcommand)]
    Roster(RosterCmd),
    /// Print a one-page pin card for the incident binder: the root, relay and member
    /// fingerprints and the roster's digest, with how to check them by phone.
    Pincard {
        /// The signed roster; it must verify against the root key.
        #[arg(long)]
        roster: PathBuf,
        /// The root key: a `bgroot1…` string or the root key file.
        #[arg(long)]
        root: String,
        /// Also write the card as an A4 SVG to this file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum NewOnly {
    /// Generate a new key.
    New(NewArgs),
}

#[derive(Subcommand, Debug)]
enum MemberCmd {
    /// Generate a new member key.
    New {
        /// The member's name, as it will appear in the roster.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        args: NewArgs,
    },
}

#[derive(Args, Debug)]
struct NewArgs {
    /// Where to write the key file (mode 0600).
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
    /// Protect the key file with a passphrase (asked for, never an argument).
    #[arg(long)]
    encrypt: bool,
}

#[derive(Subcommand, Debug)]
enum PaperCmd {
    /// Print the key's 24 BIP-39 words for writing on paper.
    Show {
        /// The key file.
        file: PathBuf,
    },
    /// Rebuild a key file from its 24 words.
    Restore {
        /// Where to write the key file.
        #[arg(long)]
        out: PathBuf,
        /// Which kind of key the words belong to.
        #[arg(long, value_enum, default_value_t = Kind::Member)]
        kind: Kind,
        #[command(flatten)]
        opts: WriteOpts,
    },
    /// Split the key into SLIP-39 shares, any K of which rebuild it.
    Split {
        /// The key file.
        file: PathBuf,
        /// How many shares are needed to rebuild the key.
        #[arg(long)]
        threshold: u8,
        /// How many shares to make.
        #[arg(long)]
        shares: u8,
    },
    /// Rebuild a key from SLIP-39 shares, one per line on standard input.
    Combine {
        /// Where to write the key file.
        #[arg(long)]
        out: PathBuf,
        /// Which kind of key the shares belong to.
        #[arg(long, value_enum, default_value_t = Kind::Root)]
        kind: Kind,
        #[command(flatten)]
        opts: WriteOpts,
    },
}

#[derive(Args, Debug)]
struct WriteOpts {
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
    /// Protect the key file with a passphrase.
    #[arg(long)]
    encrypt: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Root,
    Relay,
    Member,
}

impl From<Kind> for KeyKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Root => KeyKind::Root,
            Kind::Relay => KeyKind::Relay,
            Kind::Member => KeyKind::Member,
        }
    }
}

#[derive(Subcommand, Debug)]
enum RosterCmd {
    /// Start a new roster source (TOML).
    Init {
        /// Where to write the source.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a member, relay or channel to a roster source.
    Add {
        /// The roster source.
        source: PathBuf,
        #[command(subcommand)]
        entry: AddEntry,
    },
    /// Remove a member, relay or `#channel` from a roster source.
    Remove {
        /// The roster source.
        source: PathBuf,
        /// The name to remove; a channel is written `#name`.
        name: String,
    },
    /// Sign the roster source with the root key: the next version, issued now.
    Sign {
        /// The roster source.
        source: PathBuf,
        /// The root key file.
        #[arg(long)]
        root: PathBuf,
        /// Where to write the signed roster.
        #[arg(long)]
        out: PathBuf,
        /// How long the signed roster stays valid (e.g. 90d, 12weeks).
        #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
        valid_for: Duration,
    },
    /// Check a signed roster against the root key.
    Verify {
        /// The signed roster.
        file: PathBuf,
        /// The root key: a `bgroot1…` string or the root key file.
        #[arg(long)]
        root: String,
        /// Refuse versions below this one (rollback).
        #[arg(long, default_value_t = 0)]
        min_version: u64,
    },
    /// Print a roster (signed or source).
    Show {
        /// The roster file.
        file: PathBuf,
        /// Verify against this root key first (a `bgroot1…` string or the key file).
        #[arg(long)]
        root: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum AddEntry {
    /// A member.
    Member {
        /// The member's name.
        #[arg(long)]
        name: String,
        /// The member's public key: a `bgmember1…` string or their key file.
        #[arg(long)]
        key: String,
        /// What the member may do.
        #[arg(long, value_enum, default_value_t = RoleArg::Responder)]
        role: RoleArg,
        /// A channel the member belongs to (repeatable).
        #[arg(long = "channel")]
        channels: Vec<String>,
    },
    /// A relay.
    Relay {
        /// The relay's name.
        #[arg(long)]
        name: String,
        /// `IP:port` (no DNS) or `host:port`.
        #[arg(long)]
        address: String,
        /// The relay's public key: a `bgrelay1…` string or its key file.
        #[arg(long)]
        key: String,
    },
    /// A channel.
    Channel {
        /// The channel's name, with or without `#`.
        #[arg(long)]
        name: String,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    Admin,
    Responder,
    Probe,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Responder => Role::Responder,
            RoleArg::Probe => Role::Probe,
        }
    }
}

/// Parses the arguments, runs the command and prints any error with its whole chain.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("breakglass-keygen: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Root(NewOnly::New(args)) => new_key(KeyKind::Root, None, &args),
        Command::Relay(NewOnly::New(args)) => new_key(KeyKind::Relay, None, &args),
        Command::Member(MemberCmd::New { name, args }) => {
            let name: Name = name.parse()?;
            new_key(KeyKind::Member, Some(&name), &args)
        }
        Command::Pubkey { file, fingerprint } => pubkey(&file, fingerprint),
        Command::Paper(cmd) => paper(cmd),
        Command::Roster(cmd) => roster_cmd(cmd),
        Command::Pincard { roster, root, svg } => pincard(&roster, &root, svg.as_deref()),
    }
}

fn new_key(kind: KeyKind, name: Option<&Name>, args: &NewArgs) -> Result<()> {
    let pass = new_passphrase(args.encrypt)?;
    let key = SecretKey::generate(kind);
    save(&args.out, &key, pass.as_ref(), args.force)?;
    let label = name.map_or(String::new(), |n| format!(" for {n}"));
    eprintln!("wrote {} key{label} to {}", kind, args.out.display());
    eprintln!("fingerprint: {}", key.fingerprint());
    println!("{}", key.public_string());
    Ok(())
}

/// The passphrase for a new key file, when `encrypt` asks for one.
///
/// Asked before any words or shares are read: from a pipe, it is the first line.
fn new_passphrase(encrypt: bool) -> Result<Option<Zeroizing<String>>> {
    if !encrypt {
        return Ok(None);
    }
    let pass = prompt::new_passphrase().context("cannot read the new passphrase")?;
    Ok(Some(pass))
}

fn save(path: &Path, key: &SecretKey, pass: Option<&Zeroizing<String>>, force: bool) -> Result<()> {
    keyio::save_key(path, key, pass.map(|p| p.as_bytes()), force)?;
    Ok(())
}

/// Refuses an existing target before anyone types 24 words or gathers shares for it.
fn check_target(out: &Path, force: bool) -> Result<()> {
    if !force && out.symlink_metadata().is_ok() {
        return Err(keyio::KeyIoError::Exists(out.to_path_buf()).into());
    }
    Ok(())
}

fn load(path: &Path) -> Result<SecretKey> {
    Ok(keyio::load_key(path, prompt::passphrase)?)
}

fn pubkey(file: &Path, fingerprint: bool) -> Result<()> {
    let key = load(file)?;
    if fingerprint {
        println!("{}", key.fingerprint());
    } else {
        println!("{}", key.public_string());
    }
    Ok(())
}

fn paper(cmd: PaperCmd) -> Result<()> {
    match cmd {
        PaperCmd::Show { file } => paper_show(&file),
        PaperCmd::Restore { out, kind, opts } => {
            check_target(&out, opts.force)?;
            let pass = new_passphrase(opts.encrypt)?;
            let input = prompt::paper_words().context("cannot read the words")?;
            let seed = bip39words::words_to_seed(&word_lines(&input))?;
            restored(&out, kind.into(), Seed::from_bytes(*seed), pass, opts.force)
        }
        PaperCmd::Split {
            file,
            threshold,
            shares,
        } => paper_split(&file, threshold, shares),
        PaperCmd::Combine { out, kind, opts } => {
            check_target(&out, opts.force)?;
            let pass = new_passphrase(opts.encrypt)?;
            let input = prompt::shares().context("cannot read the shares")?;
            let shares: Zeroizing<Vec<String>> = Zeroizing::new(
                input
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect(),
            );
            let secret = slip39::combine(&shares, b"")?;
            let bytes: [u8; 32] = secret
                .as_slice()
                .try_into()
                .context("the shares hold a secret that is not a 32-byte breakglass seed")?;
            let result = restored(&out, kind.into(), Seed::from_bytes(bytes), pass, opts.force);
            zeroize::Zeroize::zeroize(&mut Zeroizing::new(bytes));
            result
        }
    }
}

fn paper_show(file: &Path) -> Result<()> {
    let key = load(file)?;
    let words = bip39words::seed_to_words(key.seed().expose());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "breakglass {} key — paper backup (BIP-39, 24 words)",
        key.kind()
    )?;
    writeln!(out, "fingerprint: {}", key.fingerprint())?;
    writeln!(out)?;
    writeln!(out, "{}", bip39words::layout(&words).as_str())?;
    writeln!(out)?;
    writeln!(
        out,
        "Restore with: breakglass-keygen paper restore --kind {} --out FILE",
        key.kind()
    )?;
    Ok(())
}

fn restored(
    out: &Path,
    kind: KeyKind,
    seed: Seed,
    pass: Option<Zeroizing<String>>,
    force: bool,
) -> Result<()> {
    let key = SecretKey::from_seed(kind, seed);
    save(out, &key, pass.as_ref(), force)?;
    eprintln!("restored {} key to {}", kind, out.display());
    eprintln!(
        "fingerprint: {}  (compare it with the one on the paper)",
        key.fingerprint()
    );
    println!("{}", key.public_string());
    Ok(())
}

/// The lines of pasted words that carry them: when some lines start with a number label
/// (`1.`, `1)`, `1:`), as the page [`paper_show`] prints does, only those, so the whole
/// page can be pasted back with its heading and fingerprint; otherwise all of the input.
fn word_lines(input: &str) -> Zeroizing<String> {
    let numbered = |line: &&str| {
        let first = line.split_whitespace().next().unwrap_or("");
        let rest = first.trim_start_matches(|c: char| c.is_ascii_digit());
        rest.len() < first.len() && rest.starts_with(['.', ')', ':'])
    };
    if !input.lines().any(|line| numbered(&line)) {
        return Zeroizing::new(input.to_string());
    }
    let mut words = Zeroizing::new(String::with_capacity(input.len() + 1));
    for line in input.lines().filter(numbered) {
        words.push_str(line);
        words.push('\n');
    }
    words
}

fn paper_split(file: &Path, threshold: u8, shares: u8) -> Result<()> {
    let key = load(file)?;
    let list = Zeroizing::new(slip39::split(key.seed().expose(), threshold, shares)?);
    let mut out = std::io::stdout().lock();
    if !std::io::stdout().is_terminal() {
        for share in list.iter() {
            writeln!(out, "{share}")?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "breakglass {} key {} — SLIP-39 shares: any {threshold} of these {shares} rebuild it.",
        key.kind(),
        key.fingerprint()
    )?;
    writeln!(out, "Give each share to a different person.\n")?;
    for (i, share) in list.iter().enumerate() {
        let words: Vec<&str> = share.split(' ').collect();
        writeln!(out, "Share {} of {shares}:", i + 1)?;
        writeln!(out, "{}\n", bip39words::layout(&words).as_str())?;
    }
    Ok(())
}

/// Prints the pin card of a signed roster, and writes its SVG form when asked.
fn pincard(roster: &Path, root: &str, svg: Option<&Path>) -> Result<()> {
    let root = rosterfile::root_public(root)?;
    let signed = rosterfile::read_bounded(roster)?;
    let card = PinCard::new(&signed, &root).with_context(|| roster.display().to_string())?;
    if let Some(path) = svg {
        rosterfile::write_public(path, card.to_svg().as_bytes())
            .with_context(|| format!("cannot write the SVG card to {}", path.display()))?;
        eprintln!("wrote the A4 pin card to {}", path.display());
    }
    print!("{}", card.to_text());
    Ok(())
}

fn roster_cmd(cmd: RosterCmd) -> Result<()> {
    match cmd {
        RosterCmd::Init { out } => {
            if out.exists() {
                bail!("{}: already exists", out.display());
            }
            let mut roster = Roster::new(Timestamp::now(), Duration::from_secs(86_400));
            roster.version = 0;
            rosterfile::save_source(&out, &roster)?;
            eprintln!("wrote an empty roster source to {}", out.display());
            Ok(())
        }
        RosterCmd::Add { source, entry } => {
            let mut roster = rosterfile::load_source(&source)?;
            add_entry(&mut roster, entry)?;
            check_source(&roster)?;
            rosterfile::save_source(&source, &roster)
        }
        RosterCmd::Remove { source, name } => {
            let mut roster = rosterfile::load_source(&source)?;
            remove_entry(&mut roster, &name)?;
            check_source(&roster)?;
            rosterfile::save_source(&source, &roster)
        }
        RosterCmd::Sign {
            source,
            root,
            out,
            valid_for,
        } => sign(&source, &root, &out, valid_for),
        RosterCmd::Verify {
            file,
            root,
            min_version,
        } => {
            let root = rosterfile::root_public(&root)?;
            let roster = rosterfile::verify_file(&file, &root, min_version)?;
            println!(
                "OK: roster version {} signed by root {}, {} members, {} relays, expires {}",
                roster.version,
                root.fingerprint(),
                roster.members.len(),
                roster.relays.len(),
                roster.expires_at
            );
            Ok(())
        }
        RosterCmd::Show { file, root } => show(&file, root.as_deref()),
    }
}

/// Checks a source as signing would, except for its dates and version.
fn check_source(roster: &Roster) -> Result<()> {
    let mut probe = roster.clone();
    probe.version = probe.version.max(1);
    probe.issued_at = Timestamp(0);
    probe.expires_at = Timestamp(1);
    probe.validate()?;
    Ok(())
}

fn add_entry(roster: &mut Roster, entry: AddEntry) -> Result<()> {
    match entry {
        AddEntry::Member {
            name,
            key,
            role,
            channels,
        } => {
            let channels = channels
                .iter()
                .map(|c| c.trim_start_matches('#').parse())
                .collect::<Result<_, _>>()?;
            roster.members.push(Member {
                name: name.parse()?,
                key: member_public(&key)?,
                role: role.into(),
                channels,
            });
        }
        AddEntry::Relay { name, address, key } => roster.relays.push(Relay {
            name: name.parse()?,
            address,
            key: signing_public(KeyKind::Relay, &key)?,
        }),
        AddEntry::Channel { name, description } => roster.channels.push(Channel {
            name: name.trim_start_matches('#').parse()?,
            description,
        }),
    }
    Ok(())
}

fn remove_entry(roster: &mut Roster, name: &str) -> Result<()> {
    let before = roster.members.len() + roster.relays.len() + roster.channels.len();
    if let Some(channel) = name.strip_prefix('#') {
        roster.channels.retain(|c| c.name.as_str() != channel);
        for m in &mut roster.members {
            m.channels.retain(|c| c.as_str() != channel);
        }
    } else {
        roster.members.retain(|m| m.name.as_str() != name);
        roster.relays.retain(|r| r.name.as_str() != name);
    }
    let after = roster.members.len() + roster.relays.len() + roster.channels.len();
    if before == after {
        bail!("no member, relay or channel named {name:?} in the roster");
    }
    Ok(())
}

fn member_public(text_or_path: &str) -> Result<MemberPublic> {
    match text_or_path.parse::<MemberPublic>() {
        Ok(key) => Ok(key),
        Err(_) if Path::new(text_or_path).is_file() => {
            let key = load(Path::new(text_or_path))?
                .into_member()
                .with_context(|| text_or_path.to_string())?;
            Ok(key.public())
        }
        Err(e) => Err(e).with_context(|| format!("not a member key: {text_or_path}")),
    }
}

fn signing_public(kind: KeyKind, text_or_path: &str) -> Result<SigningPublic> {
    match SigningPublic::parse(kind, text_or_path) {
        Ok(key) => Ok(key),
        Err(_) if Path::new(text_or_path).is_file() => {
            let key = load(Path::new(text_or_path))?
                .into_signing(kind)
                .with_context(|| text_or_path.to_string())?;
            Ok(key.public())
        }
        Err(e) => Err(e).with_context(|| format!("not a {kind} key: {text_or_path}")),
    }
}

fn sign(source: &Path, root: &Path, out: &Path, valid_for: Duration) -> Result<()> {
    let roster = rosterfile::load_source(source)?;
    let root = load(root)?
        .into_signing(KeyKind::Root)
        .with_context(|| root.display().to_string())?;
    let (signed, next) = rosterfile::sign(&roster, &root, valid_for)?;
    rosterfile::write_public(out, &signed)?;
    rosterfile::save_source(source, &next)?;
    eprintln!(
        "signed roster version {} ({} members, {} relays), valid until {}",
        next.version,
        next.members.len(),
        next.relays.len(),
        next.expires_at
    );
    eprintln!(
        "wrote {}  sha256 {}",
        out.display(),
        roster::digest(&signed)
    );
    Ok(())
}

fn show(file: &Path, root: Option<&str>) -> Result<()> {
    let bytes = rosterfile::read_bounded(file)?;
    let (roster, status) = if bytes.starts_with(b"breakglass-roster") {
        match root {
            Some(root) => {
                let root = rosterfile::root_public(root)?;
                let r = rosterfile::verify_file(file, &root, 0)?;
                (r, format!("verified against root {}", root.fingerprint()))
            }
            None => (
                roster::inspect_unverified(&bytes)
                    .with_context(|| format!("{}: not a valid roster", file.display()))?,
                "NOT VERIFIED (give --root to check the signature)".to_string(),
            ),
        }
    } else {
        (
            rosterfile::load_source(file)?,
            "unsigned source".to_string(),
        )
    };
    print!("{}", render(&roster, &status));
    Ok(())
}

/// The roster as a table for people.
pub fn render(roster: &Roster, status: &str) -> String {
    let mut out = format!(
        "roster version {}  issued {}  expires {}\n{status}\n\nmembers:\n",
        roster.version, roster.issued_at, roster.expires_at
    );
    for m in &roster.members {
        let channels: Vec<String> = m.channels.iter().map(|c| format!("#{c}")).collect();
        out.push_str(&format!(
            "  {:<16} {:<9} {}  {}\n",
            m.name.as_str(),
            format!("{:?}", m.role).to_lowercase(),
            m.key.fingerprint(),
            channels.join(" ")
        ));
    }
    out.push_str("relays:\n");
    for r in &roster.relays {
        out.push_str(&format!(
            "  {:<16} {:<22} {}\n",
            r.name.as_str(),
            r.address,
            r.key.fingerprint()
        ));
    }
    out.push_str("channels:\n");
    for c in &roster.channels {
        out.push_str(&format!("  #{:<15} {}\n", c.name.as_str(), c.description));
    }
    out
}
