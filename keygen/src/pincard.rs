//! The pin card: one printed page, kept in the incident binder, of every public value a
//! responder must check by voice when the usual channels are down: the root key, the
//! relays, the roster's version and SHA-256, and each member's fingerprint, with the
//! procedure for reading them aloud over a phone.
//!
//! The card is built only from a roster that verified against the root key, so a printed
//! card never vouches for a roster the root did not sign. It holds no secret. The same
//! lines render as plain text (for the terminal or a printer) and as an A4 SVG.

use breakglass_protocol::roster::{self, Policy, Roster, Timestamp};
use breakglass_protocol::SigningPublic;
use svg::node::element::{Rectangle, Text as TextElement};
use svg::Document;

/// A4 portrait, in millimetres.
const PAGE_WIDTH: f64 = 210.0;
const PAGE_HEIGHT: f64 = 297.0;
/// The printable margin on every side, in millimetres.
const MARGIN: f64 = 12.0;
/// The body font size, in millimetres (about 9.6 pt), before shrinking to fit the page.
const FONT_SIZE: f64 = 3.4;
/// Line pitch as a multiple of the font size.
const LINE_PITCH: f64 = 1.4;
/// Width of one monospace character as a multiple of the font size (DejaVu Sans Mono,
/// Courier and Liberation Mono are all 0.6 em or narrower).
const CHAR_WIDTH: f64 = 0.6;

/// What a card line is, which decides how it is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// The card's title.
    Title,
    /// A section heading.
    Heading,
    /// Anything else.
    Body,
}

/// One line of the card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// How the line is drawn.
    pub style: Style,
    /// Its text, already indented.
    pub text: String,
}

/// A pin card for one signed roster.
#[derive(Clone, Debug)]
pub struct PinCard {
    lines: Vec<Line>,
}

/// Why no card was made.
#[derive(Debug, thiserror::Error)]
pub enum PinCardError {
    /// The roster did not verify against the root key (or expired): no card vouches for it.
    #[error("no pin card for a roster that does not verify")]
    Unverified(#[source] roster::RosterError),
}

impl PinCard {
    /// Verifies `signed` against `root` (signature and expiry) and lays out its card.
    ///
    /// # Errors
    ///
    /// [`PinCardError::Unverified`] when the roster was not signed by `root`, is malformed
    /// or has expired.
    pub fn new(signed: &[u8], root: &SigningPublic) -> Result<PinCard, PinCardError> {
        let policy = Policy {
            now: Timestamp::now(),
            min_version: 0,
        };
        let roster = roster::verify(signed, root, policy).map_err(PinCardError::Unverified)?;
        Ok(PinCard {
            lines: layout(root, &roster, &roster::digest(signed)),
        })
    }

    /// The card's lines, top to bottom.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// The card as plain text, one line per card line, ending with a newline.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            out.push_str(line.text.trim_end());
            out.push('\n');
        }
        out
    }

    /// The card as an A4 portrait SVG document, in a monospace font so the columns line
    /// up as in the text. The font shrinks when the roster is too long for one page.
    pub fn to_svg(&self) -> String {
        let size = self.font_size();
        let pitch = size * LINE_PITCH;
        let mut document = Document::new()
            .set("width", format!("{PAGE_WIDTH}mm"))
            .set("height", format!("{PAGE_HEIGHT}mm"))
            .set("viewBox", (0, 0, PAGE_WIDTH, PAGE_HEIGHT))
            .add(
                Rectangle::new()
                    .set("width", PAGE_WIDTH)
                    .set("height", PAGE_HEIGHT)
                    .set("fill", "white"),
            );
        let mut y = MARGIN + size;
        for line in &self.lines {
            if !line.text.trim().is_empty() {
                document = document.add(text_element(line, size, y));
            }
            y += pitch;
        }
        format!("{document}\n")
    }

    /// The largest font size, at most [`FONT_SIZE`], at which every line fits the page.
    fn font_size(&self) -> f64 {
        let rows = self.lines.len().max(1) as f64;
        let columns = self
            .lines
            .iter()
            .map(|l| l.text.chars().count())
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let by_height = (PAGE_HEIGHT - 2.0 * MARGIN) / (rows * LINE_PITCH);
        let by_width = (PAGE_WIDTH - 2.0 * MARGIN) / (columns * CHAR_WIDTH);
        FONT_SIZE.min(by_height).min(by_width)
    }
}

/// One `<text>` element; the svg crate escapes the content and attribute values.
///
/// The indentation becomes the `x` position, and the spaces inside become no-break
/// spaces: SVG collapses runs of ordinary spaces and renderers drop leading ones, which
/// would break the columns, and the crate writes a line break around every text node,
/// which `xml:space="preserve"` would turn into a stray leading space.
fn text_element(line: &Line, size: f64, y: f64) -> TextElement {
    let (scale, weight) = match line.style {
        Style::Title => (1.3, "bold"),
        Style::Heading => (1.0, "bold"),
        Style::Body => (1.0, "normal"),
    };
    let text = line.text.trim_end();
    let content = text.trim_start();
    let indent = (text.len() - content.len()) as f64 * CHAR_WIDTH * size;
    TextElement::new(content.replace(' ', "\u{a0}"))
        .set("x", round(MARGIN + indent))
        .set("y", round(y))
        .set(
            "font-family",
            "DejaVu Sans Mono, Liberation Mono, Courier New, monospace",
        )
        .set("font-size", round(size * scale))
        .set("font-weight", weight)
}

/// Millimetres to two decimals, so the SVG stays short and stable.
fn round(mm: f64) -> f64 {
    (mm * 100.0).round() / 100.0
}

/// The card's content. Values are on lines of their own or after a fixed label, so each
/// can be read aloud and compared without hunting for it.
fn layout(root: &SigningPublic, roster: &Roster, digest: &str) -> Vec<Line> {
    let mut card = Lines::default();
    card.title(&format!(
        "BREAKGLASS PIN CARD - roster version {}",
        roster.version
    ));
    card.body("Public values only: nothing here is secret. Keep it in the incident binder.");
    card.body("Reprint it after every roster signature: it is for this version only.");
    card.heading("ROOT KEY (signs every roster; clients and relays pin it)");
    card.field("fingerprint", &root.fingerprint());
    card.field("key", &root.to_string());
    card.heading("ROSTER");
    card.field("version", &roster.version.to_string());
    card.field("issued", &roster.issued_at.to_string());
    card.field("expires", &roster.expires_at.to_string());
    card.field("sha256", digest);
    for half in digest.as_bytes().chunks(32) {
        card.field("", &groups_of_four(half));
    }
    relays(&mut card, roster);
    members(&mut card, roster);
    instructions(&mut card);
    card.0
}

fn relays(card: &mut Lines, roster: &Roster) {
    card.heading("RELAYS (each client config pins the relay key)");
    if roster.relays.is_empty() {
        card.body("  (this roster lists no relay)");
    }
    for relay in &roster.relays {
        card.body(&format!("  {:<14} {}", relay.name.as_str(), relay.address));
        card.field("  fingerprint", &relay.key.fingerprint());
        card.field("  key", &relay.key.to_string());
    }
}

fn members(card: &mut Lines, roster: &Roster) {
    card.heading("MEMBERS");
    card.body(&format!(
        "  {:<24} {:<10} {}",
        "name", "role", "fingerprint"
    ));
    for member in &roster.members {
        let role = format!("{:?}", member.role).to_lowercase();
        card.body(&format!(
            "  {:<24} {:<10} {}",
            member.name.as_str(),
            role,
            member.key.fingerprint()
        ));
    }
}

/// How to check a value by phone. Whoever sits at the machine reads; whoever holds the card
/// compares in silence, so that nobody can simply agree with a value read to them.
fn instructions(card: &mut Lines) {
    card.heading("CHECKING A VALUE BY PHONE");
    for text in [
        "1. Call on a number you already had, never one given in the request itself.",
        "2. The person at the machine reads the value aloud, in groups of four characters.",
        "   The person holding this card compares in silence, character by character, and",
        "   never reads the card's value out first: a \"yes\" to a value read out proves",
        "   nothing.",
        "3. Where each value is shown:",
        "   root     breakglass --config FILE roster show   (\"verified against root ...\")",
        "   roster   sha256sum roster.signed",
        "   relay    journalctl -u breakglass-relay | grep 'relay started'   (relay=...)",
        "   member   breakglass-keygen pubkey --fingerprint NAME.key",
        "4. On any mismatch: STOP. Do not use, edit, sign or push what failed; a mismatch",
        "   may be tampering. Tell the incident lead by phone, note it in the incident log,",
        "   and get the value again from the offline machine or another card holder.",
    ] {
        card.body(text);
    }
}

/// `abcdef12…` as `abcd ef12 …`, for reading aloud.
fn groups_of_four(hex: &[u8]) -> String {
    let groups: Vec<String> = hex
        .chunks(4)
        .map(|g| String::from_utf8_lossy(g).into_owned())
        .collect();
    groups.join(" ")
}

/// The card being laid out.
#[derive(Default)]
struct Lines(Vec<Line>);

impl Lines {
    fn push(&mut self, style: Style, text: &str) {
        self.0.push(Line {
            style,
            text: text.to_string(),
        });
    }

    fn title(&mut self, text: &str) {
        self.push(Style::Title, text);
    }

    /// A heading, after a blank line.
    fn heading(&mut self, text: &str) {
        self.push(Style::Body, "");
        self.push(Style::Heading, text);
    }

    fn body(&mut self, text: &str) {
        self.push(Style::Body, text);
    }

    /// `label` and `value` in two columns.
    fn field(&mut self, label: &str, value: &str) {
        self.push(Style::Body, &format!("  {label:<14} {value}"));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use breakglass_protocol::roster::{Member, Relay, Role};
    use breakglass_protocol::{KeyKind, MemberSecret, SigningSecret};

    use super::*;

    fn signed(root: &SigningSecret, address: &str) -> (Vec<u8>, Roster) {
        let mut roster = Roster::new(Timestamp::now(), Duration::from_secs(86_400));
        roster.members.push(Member {
            name: "alice".parse().expect("a valid name"),
            key: MemberSecret::generate().public(),
            role: Role::Admin,
            channels: Vec::new(),
        });
        roster.relays.push(Relay {
            name: "r1".parse().expect("a valid name"),
            address: address.into(),
            key: SigningSecret::generate(KeyKind::Relay).public(),
        });
        (roster.sign(root).expect("signs"), roster)
    }

    #[test]
    fn the_card_names_every_key_and_the_digest() {
        let root = SigningSecret::generate(KeyKind::Root);
        let (bytes, roster) = signed(&root, "203.0.113.7:7443");
        let text = PinCard::new(&bytes, &root.public())
            .expect("verifies")
            .to_text();
        assert!(text.contains(&root.public().fingerprint()), "{text}");
        assert!(text.contains(&root.public().to_string()), "{text}");
        assert!(text.contains(&roster.relays[0].key.fingerprint()), "{text}");
        assert!(
            text.contains(&roster.members[0].key.fingerprint()),
            "{text}"
        );
        assert!(text.contains(&roster::digest(&bytes)), "{text}");
    }

    #[test]
    fn a_roster_of_another_root_gets_no_card() {
        let (bytes, _) = signed(&SigningSecret::generate(KeyKind::Root), "203.0.113.7:7443");
        let other = SigningSecret::generate(KeyKind::Root).public();
        let err = PinCard::new(&bytes, &other).expect_err("refused");
        assert!(err.to_string().contains("does not verify"), "{err}");
    }

    #[test]
    fn svg_text_is_escaped() {
        // A signed roster can no longer carry markup in an address, so the line is made
        // directly: the escaping must hold whatever text reaches it.
        let card = PinCard {
            lines: vec![Line {
                style: Style::Body,
                text: "relay r1 <b>&\"x':7443".into(),
            }],
        };
        let svg = card.to_svg();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("&lt;b&gt;&amp;\"x':7443"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
    }

    #[test]
    fn a_long_roster_shrinks_the_font_to_stay_on_one_page() {
        let short = PinCard {
            lines: vec![Line {
                style: Style::Body,
                text: "x".into(),
            }],
        };
        assert_eq!(short.font_size(), FONT_SIZE);
        let long = PinCard {
            lines: vec![short.lines[0].clone(); 200],
        };
        let size = long.font_size();
        assert!(size * LINE_PITCH * 200.0 <= PAGE_HEIGHT - 2.0 * MARGIN + 1e-9);
    }
}
