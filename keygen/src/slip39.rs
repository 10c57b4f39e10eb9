//! SLIP-39 Shamir's Secret-Sharing for Mnemonic Codes: split a master secret into k-of-n
//! paper shares and combine them back, exactly as SLIP-0039 specifies, so that other
//! implementations (Trezor, the reference `shamir-mnemonic`) read our shares and we theirs.
//!
//! The code follows the specification's steps and uses its names: the share mnemonic
//! format, the RS1024 checksum, GF(256) interpolation, SplitSecret / RecoverSecret with the
//! digest at index 254 and the secret at index 255, the four-round Feistel encryption of
//! the master secret (*MS*) into the encrypted master secret (*EMS*), and the two-level
//! scheme of groups and members. Intermediate secret buffers are zeroized when dropped.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, OsRng, RngCore};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// Bits per mnemonic word.
const RADIX_BITS: usize = 10;
/// Words holding the identifier, extendable flag and iteration exponent.
const ID_EXP_WORDS: usize = 2;
/// Words of the RS1024 checksum.
const CHECKSUM_WORDS: usize = 3;
/// Words of a share that are not share value: id/exp, 2 of share parameters, checksum.
const METADATA_WORDS: usize = ID_EXP_WORDS + 2 + CHECKSUM_WORDS;
/// The master secret must have at least 128 bits of entropy.
const MIN_SECRET_BYTES: usize = 16;
/// The shortest valid share: a 128-bit secret.
const MIN_WORDS: usize = METADATA_WORDS + (MIN_SECRET_BYTES * 8).div_ceil(RADIX_BITS);
/// Group and member counts are 4-bit fields.
const MAX_SHARE_COUNT: u8 = 16;
/// Iteration exponents are 4-bit fields.
const MAX_ITERATION_EXPONENT: u8 = 15;
/// Length of the digest at the start of the digest share.
const DIGEST_BYTES: usize = 4;
/// x coordinate of the digest share (SLIP-39 §Sharing a secret).
const DIGEST_INDEX: u8 = 254;
/// x coordinate of the shared secret.
const SECRET_INDEX: u8 = 255;
/// PBKDF2 iterations for iteration exponent 0, over all four Feistel rounds.
const BASE_ITERATIONS: u32 = 10_000;
/// RS1024 customization string, and PBKDF2 salt prefix, of non-extendable shares.
const CUSTOMIZATION: &[u8] = b"shamir";
/// RS1024 customization string of shares with the extendable backup flag.
const CUSTOMIZATION_EXTENDABLE: &[u8] = b"shamir_extendable";

/// Why a split was refused or a set of shares could not be combined.
///
/// Share numbers and word positions count from 1, in the order the caller gave them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Slip39Error {
    /// A word is not in the SLIP-39 wordlist.
    #[error("share {share}, word {position}: {word:?} is not a SLIP-39 word")]
    UnknownWord {
        /// Which share.
        share: usize,
        /// Which word of that share.
        position: usize,
        /// The word as given.
        word: String,
    },
    /// A share has a number of words that no SLIP-39 share can have.
    #[error(
        "share {share}: {words} words is not a valid share length \
         (shares of 128- and 256-bit secrets have 20 and 33 words)"
    )]
    WrongWordCount {
        /// Which share.
        share: usize,
        /// How many words it has.
        words: usize,
    },
    /// The RS1024 checksum of a share does not verify.
    #[error("share {share}: invalid checksum, check its words for a typo")]
    InvalidChecksum {
        /// Which share.
        share: usize,
    },
    /// The padding bits in front of the share value are not zero.
    #[error("share {share}: bad padding, check its words for a typo")]
    BadPadding {
        /// Which share.
        share: usize,
    },
    /// A share claims a group threshold above its group count.
    #[error("share {share}: group threshold exceeds group count, the share is corrupt")]
    ImpossibleGroupThreshold {
        /// Which share.
        share: usize,
    },
    /// A share comes from another split than share 1: identifier, iteration exponent or
    /// extendable flag differ.
    #[error(
        "share {share} is from a different set of shares than share 1 (first two words differ)"
    )]
    DifferentSets {
        /// Which share.
        share: usize,
    },
    /// Two shares of one set disagree about a parameter they must have in common.
    #[error("shares {other} and {share} do not belong together: different {parameter}")]
    MismatchedParameter {
        /// The share found to differ.
        share: usize,
        /// The earlier share it was compared with.
        other: usize,
        /// What differs.
        parameter: &'static str,
    },
    /// Two shares of one group have the same member index.
    #[error("shares {first} and {second} are the same member share; give each share once")]
    DuplicateMemberIndex {
        /// The earlier share.
        first: usize,
        /// The later share with the same index.
        second: usize,
    },
    /// Fewer shares than the member threshold.
    #[error("not enough shares{}: {needed} needed, {given} given", in_group(.group))]
    NotEnoughShares {
        /// The group, numbered from 1, when the set has more than one.
        group: Option<u8>,
        /// The member threshold.
        needed: u8,
        /// Shares given.
        given: usize,
    },
    /// More shares than the member threshold: the specification asks for exactly as many.
    #[error(
        "too many shares{}: exactly {needed} needed, {given} given; leave out the extra ones",
        in_group(.group)
    )]
    TooManyShares {
        /// The group, numbered from 1, when the set has more than one.
        group: Option<u8>,
        /// The member threshold.
        needed: u8,
        /// Shares given.
        given: usize,
    },
    /// Shares from fewer groups than the group threshold.
    #[error("not enough groups: shares of {needed} groups needed, {given} given")]
    NotEnoughGroups {
        /// The group threshold.
        needed: u8,
        /// Groups given.
        given: usize,
    },
    /// Shares from more groups than the group threshold.
    #[error("too many groups: shares of exactly {needed} groups needed, {given} given")]
    TooManyGroups {
        /// The group threshold.
        needed: u8,
        /// Groups given.
        given: usize,
    },
    /// The recovered secret does not match its digest: wrong shares were combined.
    #[error("digest mismatch: these shares do not belong together or one has been altered")]
    DigestMismatch,
    /// No share was given.
    #[error("no shares given")]
    NoShares,
    /// Split parameters outside what SLIP-39 allows.
    #[error("invalid parameters: {0}")]
    InvalidParameters(&'static str),
}

/// Splits `master_secret` into `shares` SLIP-39 mnemonics, any `threshold` of which recover
/// it, each a string of words separated by single spaces.
///
/// Uses one group (group threshold 1), an empty passphrase, iteration exponent 1, the
/// extendable backup flag and a random identifier: the defaults of the reference
/// implementation, so that any SLIP-39 implementation combines the shares.
///
/// # Errors
///
/// [`Slip39Error::InvalidParameters`] if the secret is shorter than 16 bytes or of odd
/// length, if `threshold` is 0 or above `shares`, if `shares` is above 16, or for a 1-of-n
/// split with n > 1, which the specification advises against: every share would hold the
/// whole secret, so 1-of-1 is the honest form.
pub fn split(master_secret: &[u8], threshold: u8, shares: u8) -> Result<Vec<String>, Slip39Error> {
    let params = SplitParams {
        group_threshold: 1,
        groups: &[(threshold, shares)],
        passphrase: b"",
        iteration_exponent: 1,
        extendable: true,
        identifier: random_identifier(&mut OsRng),
    };
    let groups = generate_mnemonics(&params, master_secret, &mut OsRng)?;
    Ok(groups.into_iter().flatten().collect())
}

/// Combines SLIP-39 share mnemonics into the master secret, decrypted with `passphrase`
/// (empty if none was set when splitting).
///
/// Accepts any valid set: one or more groups, extendable or not, any iteration exponent,
/// words in any case separated by any whitespace. As the specification requires, exactly
/// the threshold number of groups, and of shares in each group, must be given. A wrong
/// passphrase cannot be detected: it yields a different secret (SLIP-39 §Passphrase).
///
/// # Errors
///
/// A [`Slip39Error`] naming the share at fault: an unknown word, a wrong word count, a bad
/// checksum or padding, shares of different sets or with mismatched parameters, a repeated
/// share, too few or too many shares or groups, or a digest mismatch.
pub fn combine(mnemonics: &[String], passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>, Slip39Error> {
    let shares = mnemonics
        .iter()
        .enumerate()
        .map(|(i, mnemonic)| Share::parse(i + 1, mnemonic))
        .collect::<Result<Vec<_>, _>>()?;
    let first = shares.first().ok_or(Slip39Error::NoShares)?;
    let groups = sort_into_groups(first, &shares)?;
    check_counts(first, &groups)?;

    let ems = recover_ems(first.group_threshold, &groups)?;
    Ok(first.cipher.decrypt(&ems, passphrase))
}

/// Every parameter of GenerateShares (SLIP-39 §Generating the shares), for callers that
/// need more than [`split`] offers, such as tests.
pub(crate) struct SplitParams<'a> {
    /// Groups needed to recover the secret (*GT*).
    pub group_threshold: u8,
    /// Member threshold and member count of each group (*T<sub>i</sub>*, *N<sub>i</sub>*).
    pub groups: &'a [(u8, u8)],
    /// Printable ASCII passphrase that encrypts the master secret.
    pub passphrase: &'a [u8],
    /// PBKDF2 runs 10000 × 2^e iterations.
    pub iteration_exponent: u8,
    /// The extendable backup flag.
    pub extendable: bool,
    /// The 15-bit identifier common to all shares.
    pub identifier: u16,
}

/// GenerateShares: encrypts the master secret and splits it into groups of mnemonics.
pub(crate) fn generate_mnemonics(
    params: &SplitParams<'_>,
    master_secret: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<Vec<String>>, Slip39Error> {
    let group_count = params.validate(master_secret)?;
    let cipher = CipherParams {
        identifier: params.identifier,
        extendable: params.extendable,
        iteration_exponent: params.iteration_exponent,
    };
    let ems = cipher.encrypt(master_secret, params.passphrase);

    let group_shares = split_secret(params.group_threshold, group_count, &ems, rng);
    let mut mnemonics = Vec::with_capacity(params.groups.len());
    for (&(member_threshold, member_count), (group_index, group_secret)) in
        params.groups.iter().zip(&group_shares)
    {
        let members = split_secret(member_threshold, member_count, group_secret, rng);
        let group = members.into_iter().map(|(member_index, value)| {
            let share = Share {
                number: 0,
                cipher,
                group_index: *group_index,
                group_threshold: params.group_threshold,
                group_count,
                member_index,
                member_threshold,
                value,
            };
            share.to_mnemonic()
        });
        mnemonics.push(group.collect());
    }
    Ok(mnemonics)
}

impl SplitParams<'_> {
    /// Checks the conditions of GenerateShares and SplitSecret; returns the group count.
    fn validate(&self, master_secret: &[u8]) -> Result<u8, Slip39Error> {
        use Slip39Error::InvalidParameters as Invalid;

        if master_secret.len() < MIN_SECRET_BYTES || master_secret.len() % 2 != 0 {
            return Err(Invalid(
                "the secret must be at least 16 bytes and an even number of bytes",
            ));
        }
        if !self.passphrase.iter().all(|c| (32..=126).contains(c)) {
            return Err(Invalid("the passphrase must be printable ASCII"));
        }
        if self.iteration_exponent > MAX_ITERATION_EXPONENT {
            return Err(Invalid("the iteration exponent must be at most 15"));
        }
        if self.identifier >> 15 != 0 {
            return Err(Invalid("the identifier must fit in 15 bits"));
        }
        let group_count = u8::try_from(self.groups.len()).unwrap_or(u8::MAX);
        GROUP_LIMITS.check(self.group_threshold, group_count)?;
        for &(threshold, count) in self.groups {
            MEMBER_LIMITS.check(threshold, count)?;
            if threshold == 1 && count > 1 {
                return Err(Invalid(
                    "a 1-of-n split with n > 1 only copies one share; use 1-of-1 instead",
                ));
            }
        }
        Ok(group_count)
    }
}

/// SplitSecret's condition 0 < T ≤ N ≤ 16, with the messages for groups or for members.
struct Limits {
    count: &'static str,
    threshold: &'static str,
}

const GROUP_LIMITS: Limits = Limits {
    count: "the number of groups must be between 1 and 16",
    threshold: "the group threshold must be between 1 and the number of groups",
};

const MEMBER_LIMITS: Limits = Limits {
    count: "the number of shares must be between 1 and 16",
    threshold: "the threshold must be between 1 and the number of shares",
};

impl Limits {
    fn check(&self, threshold: u8, count: u8) -> Result<(), Slip39Error> {
        if count == 0 || count > MAX_SHARE_COUNT {
            return Err(Slip39Error::InvalidParameters(self.count));
        }
        if threshold == 0 || threshold > count {
            return Err(Slip39Error::InvalidParameters(self.threshold));
        }
        Ok(())
    }
}

/// A random 15-bit identifier.
fn random_identifier(rng: &mut impl RngCore) -> u16 {
    let mut bytes = [0u8; 2];
    rng.fill_bytes(&mut bytes);
    u16::from_be_bytes(bytes) & 0x7fff
}

// ---------------------------------------------------------------------------------------
// Combining: grouping the shares and recovering the encrypted master secret.
// ---------------------------------------------------------------------------------------

/// Sorts the shares by group index, checking the conditions of SLIP-39 §Combining the
/// shares that relate shares to each other.
fn sort_into_groups<'a>(
    first: &Share,
    shares: &'a [Share],
) -> Result<BTreeMap<u8, Vec<&'a Share>>, Slip39Error> {
    let mut groups: BTreeMap<u8, Vec<&Share>> = BTreeMap::new();
    for share in shares {
        check_same_set(first, share)?;
        let members = groups.entry(share.group_index).or_default();
        check_same_group(members, share)?;
        members.push(share);
    }
    Ok(groups)
}

/// All shares must have the same identifier, iteration exponent, extendable flag, group
/// threshold, group count and length.
fn check_same_set(first: &Share, share: &Share) -> Result<(), Slip39Error> {
    if share.cipher != first.cipher {
        return Err(Slip39Error::DifferentSets {
            share: share.number,
        });
    }
    let parameter = if share.group_threshold != first.group_threshold {
        "group threshold"
    } else if share.group_count != first.group_count {
        "group count"
    } else if share.value.len() != first.value.len() {
        "secret length"
    } else {
        return Ok(());
    };
    Err(Slip39Error::MismatchedParameter {
        share: share.number,
        other: first.number,
        parameter,
    })
}

/// Shares of one group must have the same member threshold and distinct member indices.
fn check_same_group(members: &[&Share], share: &Share) -> Result<(), Slip39Error> {
    if let Some(leader) = members.first() {
        if leader.member_threshold != share.member_threshold {
            return Err(Slip39Error::MismatchedParameter {
                share: share.number,
                other: leader.number,
                parameter: "member threshold",
            });
        }
    }
    match members
        .iter()
        .find(|m| m.member_index == share.member_index)
    {
        Some(twin) => Err(Slip39Error::DuplicateMemberIndex {
            first: twin.number,
            second: share.number,
        }),
        None => Ok(()),
    }
}

/// The number of groups must equal the group threshold, and the number of shares in each
/// group its member threshold.
fn check_counts(first: &Share, groups: &BTreeMap<u8, Vec<&Share>>) -> Result<(), Slip39Error> {
    let needed = first.group_threshold;
    let given = groups.len();
    if given < usize::from(needed) {
        return Err(Slip39Error::NotEnoughGroups { needed, given });
    }
    if given > usize::from(needed) {
        return Err(Slip39Error::TooManyGroups { needed, given });
    }
    for (&index, members) in groups {
        let needed = members.first().map_or(1, |m| m.member_threshold);
        let group = (first.group_count > 1).then_some(index + 1);
        let given = members.len();
        if given < usize::from(needed) {
            return Err(Slip39Error::NotEnoughShares {
                group,
                needed,
                given,
            });
        }
        if given > usize::from(needed) {
            return Err(Slip39Error::TooManyShares {
                group,
                needed,
                given,
            });
        }
    }
    Ok(())
}

/// Recovers each group share from its member shares, then the *EMS* from the group shares.
fn recover_ems(
    group_threshold: u8,
    groups: &BTreeMap<u8, Vec<&Share>>,
) -> Result<Zeroizing<Vec<u8>>, Slip39Error> {
    let mut group_shares = Vec::with_capacity(groups.len());
    for (&group_index, members) in groups {
        let threshold = members.first().map_or(1, |m| m.member_threshold);
        let points: Vec<(u8, &[u8])> = members
            .iter()
            .map(|m| (m.member_index, m.value.as_slice()))
            .collect();
        group_shares.push((group_index, recover_secret(threshold, &points)?));
    }
    let points: Vec<(u8, &[u8])> = group_shares
        .iter()
        .map(|(index, value)| (*index, value.as_slice()))
        .collect();
    recover_secret(group_threshold, &points)
}

// ---------------------------------------------------------------------------------------
// Sharing a secret: SplitSecret and RecoverSecret over GF(256).
// ---------------------------------------------------------------------------------------

/// One share as an x coordinate and the vector of polynomial values at x.
type Point = (u8, Zeroizing<Vec<u8>>);

/// SplitSecret(T, N, S): shares for indices 0..N, any T of which give S back. The caller
/// has checked 0 < T ≤ N ≤ 16 and the length of S.
fn split_secret(
    threshold: u8,
    count: u8,
    secret: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Vec<Point> {
    if threshold == 1 {
        return (0..count)
            .map(|x| (x, Zeroizing::new(secret.to_vec())))
            .collect();
    }
    let random_count = threshold - 2;
    let mut shares: Vec<Point> = (0..random_count)
        .map(|x| (x, random_bytes(rng, secret.len())))
        .collect();
    let digest_share = digest_share(secret, rng);

    let base: Vec<(u8, &[u8])> = shares
        .iter()
        .map(|(x, y)| (*x, y.as_slice()))
        .chain([
            (DIGEST_INDEX, digest_share.as_slice()),
            (SECRET_INDEX, secret),
        ])
        .collect();
    let derived: Vec<Point> = (random_count..count)
        .map(|x| (x, interpolate(&base, x)))
        .collect();
    shares.extend(derived);
    shares
}

/// D = the first 4 bytes of HMAC-SHA256(key = R, msg = S) || R, for a random R.
fn digest_share(secret: &[u8], rng: &mut (impl RngCore + CryptoRng)) -> Zeroizing<Vec<u8>> {
    let random_part = random_bytes(rng, secret.len() - DIGEST_BYTES);
    let mut share = Zeroizing::new(digest(&random_part, secret).to_vec());
    share.extend_from_slice(&random_part);
    share
}

/// RecoverSecret(T, shares): interpolates S at 255 and checks it against the digest at 254.
fn recover_secret(
    threshold: u8,
    points: &[(u8, &[u8])],
) -> Result<Zeroizing<Vec<u8>>, Slip39Error> {
    if threshold == 1 {
        let (_, value) = points.first().ok_or(Slip39Error::NoShares)?;
        return Ok(Zeroizing::new(value.to_vec()));
    }
    let secret = interpolate(points, SECRET_INDEX);
    let digest_share = interpolate(points, DIGEST_INDEX);

    let (digest_given, random_part) = digest_share
        .split_at_checked(DIGEST_BYTES)
        .ok_or(Slip39Error::DigestMismatch)?;
    if !equal_in_constant_time(&digest(random_part, &secret), digest_given) {
        return Err(Slip39Error::DigestMismatch);
    }
    Ok(secret)
}

/// The first 4 bytes of HMAC-SHA256(key = R, msg = S).
fn digest(random_part: &[u8], secret: &[u8]) -> [u8; DIGEST_BYTES] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(random_part).expect("HMAC takes keys of any length");
    mac.update(secret);
    let tag = mac.finalize().into_bytes();
    let mut out = [0u8; DIGEST_BYTES];
    out.copy_from_slice(&tag[..DIGEST_BYTES]);
    out
}

fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_bytes(rng: &mut (impl RngCore + CryptoRng), len: usize) -> Zeroizing<Vec<u8>> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    rng.fill_bytes(&mut bytes);
    bytes
}

/// Interpolate(x, {(x_i, y_i)}) of SLIP-39 §Polynomial interpolation: the values at `x` of
/// the polynomials through the points, one per byte. The x_i must be distinct and the y_i
/// of equal length; the callers check both.
fn interpolate(points: &[(u8, &[u8])], x: u8) -> Zeroizing<Vec<u8>> {
    let len = points.first().map_or(0, |(_, y)| y.len());
    let mut result = Zeroizing::new(vec![0u8; len]);
    for (i, &(xi, yi)) in points.iter().enumerate() {
        let basis = lagrange_basis(points, i, xi, x);
        for (r, &y) in result.iter_mut().zip(yi) {
            *r ^= gf_mul(y, basis);
        }
    }
    result
}

/// The i-th Lagrange basis polynomial at x: the product over j ≠ i of (x - x_j)/(x_i - x_j).
/// Subtraction in GF(256) is exclusive or.
fn lagrange_basis(points: &[(u8, &[u8])], i: usize, xi: u8, x: u8) -> u8 {
    points
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != i)
        .fold(1, |acc, (_, &(xj, _))| gf_mul(acc, gf_div(x ^ xj, xi ^ xj)))
}

/// Exponential and logarithm tables of GF(256) modulo the Rijndael polynomial
/// x^8 + x^4 + x^3 + x + 1, with generator x + 1 (AES, FIPS 197 §4.1, §4.2).
struct Gf256 {
    exp: [u8; 255],
    log: [u8; 256],
}

static GF256: Gf256 = Gf256::tables();

impl Gf256 {
    const fn tables() -> Self {
        let mut exp = [0u8; 255];
        let mut log = [0u8; 256];
        let mut power: u16 = 1;
        let mut i = 0;
        while i < 255 {
            exp[i] = power as u8;
            log[power as usize] = i as u8;
            // Multiply by the generator x + 1, then reduce by the Rijndael polynomial.
            power ^= power << 1;
            if power & 0x100 != 0 {
                power ^= 0x11b;
            }
            i += 1;
        }
        Self { exp, log }
    }
}

fn gf_mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    let log_sum = usize::from(GF256.log[usize::from(a)]) + usize::from(GF256.log[usize::from(b)]);
    GF256.exp[log_sum % 255]
}

/// a / b. Division by zero never happens (the divisors are differences of distinct
/// indices); it returns 0 rather than panic.
fn gf_div(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    let log_diff =
        255 + usize::from(GF256.log[usize::from(a)]) - usize::from(GF256.log[usize::from(b)]);
    GF256.exp[log_diff % 255]
}

// ---------------------------------------------------------------------------------------
// Encryption of the master secret: a four-round Feistel network over PBKDF2.
// ---------------------------------------------------------------------------------------

/// The share fields that key the encryption of the master secret.
#[derive(Clone, Copy, PartialEq, Eq)]
struct CipherParams {
    identifier: u16,
    extendable: bool,
    iteration_exponent: u8,
}

impl CipherParams {
    /// EMS = Encrypt(MS, P, e, id, ext): rounds 0, 1, 2, 3.
    fn encrypt(&self, master_secret: &[u8], passphrase: &[u8]) -> Zeroizing<Vec<u8>> {
        self.feistel(master_secret, passphrase, [0, 1, 2, 3])
    }

    /// MS = Decrypt(EMS, P, e, id, ext): the same network with the rounds reversed.
    fn decrypt(&self, ems: &[u8], passphrase: &[u8]) -> Zeroizing<Vec<u8>> {
        self.feistel(ems, passphrase, [3, 2, 1, 0])
    }

    /// L, R = halves of the input; each round (L, R) = (R, L xor F(i, R)); output R || L.
    fn feistel(&self, input: &[u8], passphrase: &[u8], rounds: [u8; 4]) -> Zeroizing<Vec<u8>> {
        let (l, r) = input.split_at(input.len() / 2);
        let mut left = Zeroizing::new(l.to_vec());
        let mut right = Zeroizing::new(r.to_vec());
        for i in rounds {
            let f = self.round_function(i, passphrase, &right);
            left.iter_mut().zip(f.iter()).for_each(|(l, f)| *l ^= f);
            std::mem::swap(&mut left, &mut right);
        }
        right.extend_from_slice(&left);
        right
    }

    /// F(i, R) = PBKDF2-HMAC-SHA256(password = i || P, salt = salt prefix || R,
    /// iterations = 2500 × 2^e, length = |R|).
    fn round_function(&self, i: u8, passphrase: &[u8], r: &[u8]) -> Zeroizing<Vec<u8>> {
        let mut password = Zeroizing::new(Vec::with_capacity(1 + passphrase.len()));
        password.push(i);
        password.extend_from_slice(passphrase);
        let mut salt = Zeroizing::new(self.salt_prefix());
        salt.extend_from_slice(r);

        let iterations = (BASE_ITERATIONS << self.iteration_exponent) / 4;
        let mut f = Zeroizing::new(vec![0u8; r.len()]);
        pbkdf2::pbkdf2_hmac::<Sha256>(&password, &salt, iterations, &mut f);
        f
    }

    /// "shamir" || id for non-extendable shares; empty for extendable ones, so that new
    /// shares can later be added to an existing set under a new identifier.
    fn salt_prefix(&self) -> Vec<u8> {
        if self.extendable {
            Vec::new()
        } else {
            [CUSTOMIZATION, &self.identifier.to_be_bytes()].concat()
        }
    }

    fn customization(&self) -> &'static [u8] {
        if self.extendable {
            CUSTOMIZATION_EXTENDABLE
        } else {
            CUSTOMIZATION
        }
    }

    /// The first two words: identifier (15 bits) || extendable flag (1) || exponent (4).
    fn to_words(self) -> [u16; ID_EXP_WORDS] {
        let packed = u32::from(self.identifier) << 5
            | u32::from(self.extendable) << 4
            | u32::from(self.iteration_exponent);
        split_20_bits(packed)
    }

    fn from_words(high: u16, low: u16) -> Self {
        let packed = join_20_bits(high, low);
        Self {
            identifier: (packed >> 5) as u16,
            extendable: (packed >> 4) & 1 == 1,
            iteration_exponent: (packed & 0xf) as u8,
        }
    }
}

fn split_20_bits(packed: u32) -> [u16; 2] {
    [((packed >> 10) & 0x3ff) as u16, (packed & 0x3ff) as u16]
}

fn join_20_bits(high: u16, low: u16) -> u32 {
    u32::from(high & 0x3ff) << 10 | u32::from(low & 0x3ff)
}

// ---------------------------------------------------------------------------------------
// Format of the share mnemonic.
// ---------------------------------------------------------------------------------------

/// One member share: the fields of SLIP-39 §Format of the share mnemonic, thresholds and
/// counts as actual values (not minus one). No `Debug`: the value is secret.
struct Share {
    /// Position in the caller's list, from 1, for error messages; 0 for new shares.
    number: usize,
    cipher: CipherParams,
    group_index: u8,
    group_threshold: u8,
    group_count: u8,
    member_index: u8,
    member_threshold: u8,
    value: Zeroizing<Vec<u8>>,
}

impl Share {
    /// id || ext || e || GI || Gt || g || I || t || padded share value || checksum.
    fn to_mnemonic(&self) -> String {
        let mut words = Zeroizing::new(Vec::new());
        words.extend(self.cipher.to_words());
        words.extend(self.parameter_words());
        words.extend(value_to_words(&self.value).iter());
        let checksum = rs1024_create_checksum(self.cipher.customization(), &words);
        words.extend(checksum);
        mnemonic_from_words(&words)
    }

    /// GI, Gt, g, I and t, four bits each.
    fn parameter_words(&self) -> [u16; 2] {
        let packed = u32::from(self.group_index) << 16
            | u32::from(self.group_threshold - 1) << 12
            | u32::from(self.group_count - 1) << 8
            | u32::from(self.member_index) << 4
            | u32::from(self.member_threshold - 1);
        split_20_bits(packed)
    }

    /// Decodes share `number` of the caller's list, checking everything that can be
    /// checked on one share alone.
    fn parse(number: usize, mnemonic: &str) -> Result<Self, Slip39Error> {
        let words = words_from_mnemonic(number, mnemonic)?;
        let wrong_count = || Slip39Error::WrongWordCount {
            share: number,
            words: words.len(),
        };
        let padding = value_padding(words.len()).ok_or_else(wrong_count)?;
        let &[id_high, id_low, params_high, params_low, ref value @ .., _, _, _] = words.as_slice()
        else {
            return Err(wrong_count());
        };

        let cipher = CipherParams::from_words(id_high, id_low);
        if !rs1024_verify_checksum(cipher.customization(), &words) {
            return Err(Slip39Error::InvalidChecksum { share: number });
        }
        let mut share = Self::from_parameter_words(number, cipher, params_high, params_low)?;
        share.value =
            words_to_value(value, padding).ok_or(Slip39Error::BadPadding { share: number })?;
        Ok(share)
    }

    /// The share parameters from words three and four, with an empty value.
    fn from_parameter_words(
        number: usize,
        cipher: CipherParams,
        high: u16,
        low: u16,
    ) -> Result<Self, Slip39Error> {
        let packed = join_20_bits(high, low);
        let nibble = |shift: u32| ((packed >> shift) & 0xf) as u8;
        let share = Self {
            number,
            cipher,
            group_index: nibble(16),
            group_threshold: nibble(12) + 1,
            group_count: nibble(8) + 1,
            member_index: nibble(4),
            member_threshold: nibble(0) + 1,
            value: Zeroizing::new(Vec::new()),
        };
        if share.group_threshold > share.group_count {
            return Err(Slip39Error::ImpossibleGroupThreshold { share: number });
        }
        Ok(share)
    }
}

/// Leading zero bits of the share value in a share of `word_count` words, or `None` when
/// no share has that many words: a secret of at least 128 bits whose length is a multiple
/// of 16 bits leaves at most 8 bits of padding.
fn value_padding(word_count: usize) -> Option<usize> {
    let value_bits = word_count.checked_sub(METADATA_WORDS)? * RADIX_BITS;
    let padding = value_bits % 16;
    (word_count >= MIN_WORDS && padding <= 8).then_some(padding)
}

/// The share value as 10-bit words, big-endian, left-padded with zero bits.
fn value_to_words(value: &[u8]) -> Zeroizing<Vec<u16>> {
    let word_count = (value.len() * 8).div_ceil(RADIX_BITS);
    let mut words = Zeroizing::new(Vec::with_capacity(word_count));
    let mut acc: u32 = 0;
    // The padding bits count as already-read zero bits.
    let mut bits = word_count * RADIX_BITS - value.len() * 8;
    for &byte in value {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= RADIX_BITS {
            bits -= RADIX_BITS;
            words.push(((acc >> bits) & 0x3ff) as u16);
        }
        acc &= (1 << bits) - 1;
    }
    acc.zeroize();
    words
}

/// The share value from its words, or `None` if a padding bit is set.
fn words_to_value(words: &[u16], padding: usize) -> Option<Zeroizing<Vec<u8>>> {
    let (&first, rest) = words.split_first()?;
    let kept_bits = RADIX_BITS.checked_sub(padding)?;
    if u32::from(first) >> kept_bits != 0 {
        return None;
    }
    let mut value = Zeroizing::new(Vec::with_capacity((words.len() * RADIX_BITS - padding) / 8));
    let mut acc = u32::from(first);
    let mut bits = kept_bits;
    for &word in rest {
        acc = (acc << RADIX_BITS) | u32::from(word & 0x3ff);
        bits += RADIX_BITS;
        while bits >= 8 {
            bits -= 8;
            value.push(((acc >> bits) & 0xff) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    acc.zeroize();
    Some(value)
}

/// Word indices of a mnemonic: words in any case, separated by any whitespace.
fn words_from_mnemonic(number: usize, mnemonic: &str) -> Result<Zeroizing<Vec<u16>>, Slip39Error> {
    let mut words = Zeroizing::new(Vec::new());
    for (i, word) in mnemonic.split_whitespace().enumerate() {
        let index = word_index(word).ok_or_else(|| Slip39Error::UnknownWord {
            share: number,
            position: i + 1,
            word: word.to_owned(),
        })?;
        words.push(index);
    }
    Ok(words)
}

/// The index of a word in the wordlist, ignoring ASCII case.
fn word_index(word: &str) -> Option<u16> {
    let mut lower = [0u8; 8];
    let found = {
        let slot = lower.get_mut(..word.len())?;
        for (l, b) in slot.iter_mut().zip(word.as_bytes()) {
            *l = b.to_ascii_lowercase();
        }
        WORDLIST.binary_search_by(|w| w.as_bytes().cmp(slot)).ok()
    };
    lower.zeroize();
    u16::try_from(found?).ok()
}

fn mnemonic_from_words(words: &[u16]) -> String {
    let mut mnemonic = String::with_capacity(words.len() * 9);
    for (i, &w) in words.iter().enumerate() {
        if i > 0 {
            mnemonic.push(' ');
        }
        mnemonic.push_str(WORDLIST[usize::from(w & 0x3ff)]);
    }
    mnemonic
}

// ---------------------------------------------------------------------------------------
// Checksum: RS1024, a Reed-Solomon code over GF(1024) (SLIP-39 §Checksum).
// ---------------------------------------------------------------------------------------

fn rs1024_polymod(values: impl Iterator<Item = u32>) -> u32 {
    const GEN: [u32; 10] = [
        0x00e0_e040,
        0x01c1_c080,
        0x0383_8100,
        0x0707_0200,
        0x0e0e_0009,
        0x1c0c_2412,
        0x3808_6c24,
        0x3090_fc48,
        0x21b1_f890,
        0x03f3_f120,
    ];
    let mut chk: u32 = 1;
    for value in values {
        let top = chk >> 20;
        chk = ((chk & 0xf_ffff) << 10) ^ value;
        for (i, generator) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= generator;
            }
        }
    }
    chk
}

/// The customization string's bytes, then the words.
fn rs1024_input<'a>(customization: &'a [u8], words: &'a [u16]) -> impl Iterator<Item = u32> + 'a {
    let prefix = customization.iter().map(|&c| u32::from(c));
    prefix.chain(words.iter().map(|&w| u32::from(w)))
}

fn rs1024_verify_checksum(customization: &[u8], words: &[u16]) -> bool {
    rs1024_polymod(rs1024_input(customization, words)) == 1
}

fn rs1024_create_checksum(customization: &[u8], words: &[u16]) -> [u16; CHECKSUM_WORDS] {
    let polymod = rs1024_polymod(rs1024_input(customization, words).chain([0; CHECKSUM_WORDS])) ^ 1;
    [2, 1, 0].map(|i| ((polymod >> (10 * i)) & 0x3ff) as u16)
}

fn in_group(group: &Option<u8>) -> String {
    group.map(|g| format!(" in group {g}")).unwrap_or_default()
}

/// The SLIP-39 wordlist, sorted, as published with the specification.
#[rustfmt::skip]
static WORDLIST: [&str; 1024] = [
    "academic", "acid", "acne", "acquire", "acrobat", "activity", "actress", "adapt",
    "adequate", "adjust", "admit", "adorn", "adult", "advance", "advocate", "afraid",
    "again", "agency", "agree", "aide", "aircraft", "airline", "airport", "ajar", "alarm",
    "album", "alcohol", "alien", "alive", "alpha", "already", "alto", "aluminum",
    "always", "amazing", "ambition", "amount", "amuse", "analysis", "anatomy", "ancestor",
    "ancient", "angel", "angry", "animal", "answer", "antenna", "anxiety", "apart",
    "aquatic", "arcade", "arena", "argue", "armed", "artist", "artwork", "aspect",
    "auction", "august", "aunt", "average", "aviation", "avoid", "award", "away", "axis",
    "axle", "beam", "beard", "beaver", "become", "bedroom", "behavior", "being",
    "believe", "belong", "benefit", "best", "beyond", "bike", "biology", "birthday",
    "bishop", "black", "blanket", "blessing", "blimp", "blind", "blue", "body", "bolt",
    "boring", "born", "both", "boundary", "bracelet", "branch", "brave", "breathe",
    "briefing", "broken", "brother", "browser", "bucket", "budget", "building", "bulb",
    "bulge", "bumpy", "bundle", "burden", "burning", "busy", "buyer", "cage", "calcium",
    "camera", "campus", "canyon", "capacity", "capital", "capture", "carbon", "cards",
    "careful", "cargo", "carpet", "carve", "category", "cause", "ceiling", "center",
    "ceramic", "champion", "change", "charity", "check", "chemical", "chest", "chew",
    "chubby", "cinema", "civil", "class", "clay", "cleanup", "client", "climate",
    "clinic", "clock", "clogs", "closet", "clothes", "club", "cluster", "coal", "coastal",
    "coding", "column", "company", "corner", "costume", "counter", "course", "cover",
    "cowboy", "cradle", "craft", "crazy", "credit", "cricket", "criminal", "crisis",
    "critical", "crowd", "crucial", "crunch", "crush", "crystal", "cubic", "cultural",
    "curious", "curly", "custody", "cylinder", "daisy", "damage", "dance", "darkness",
    "database", "daughter", "deadline", "deal", "debris", "debut", "decent", "decision",
    "declare", "decorate", "decrease", "deliver", "demand", "density", "deny", "depart",
    "depend", "depict", "deploy", "describe", "desert", "desire", "desktop", "destroy",
    "detailed", "detect", "device", "devote", "diagnose", "dictate", "diet", "dilemma",
    "diminish", "dining", "diploma", "disaster", "discuss", "disease", "dish", "dismiss",
    "display", "distance", "dive", "divorce", "document", "domain", "domestic",
    "dominant", "dough", "downtown", "dragon", "dramatic", "dream", "dress", "drift",
    "drink", "drove", "drug", "dryer", "duckling", "duke", "duration", "dwarf", "dynamic",
    "early", "earth", "easel", "easy", "echo", "eclipse", "ecology", "edge", "editor",
    "educate", "either", "elbow", "elder", "election", "elegant", "element", "elephant",
    "elevator", "elite", "else", "email", "emerald", "emission", "emperor", "emphasis",
    "employer", "empty", "ending", "endless", "endorse", "enemy", "energy", "enforce",
    "engage", "enjoy", "enlarge", "entrance", "envelope", "envy", "epidemic", "episode",
    "equation", "equip", "eraser", "erode", "escape", "estate", "estimate", "evaluate",
    "evening", "evidence", "evil", "evoke", "exact", "example", "exceed", "exchange",
    "exclude", "excuse", "execute", "exercise", "exhaust", "exotic", "expand", "expect",
    "explain", "express", "extend", "extra", "eyebrow", "facility", "fact", "failure",
    "faint", "fake", "false", "family", "famous", "fancy", "fangs", "fantasy", "fatal",
    "fatigue", "favorite", "fawn", "fiber", "fiction", "filter", "finance", "findings",
    "finger", "firefly", "firm", "fiscal", "fishing", "fitness", "flame", "flash",
    "flavor", "flea", "flexible", "flip", "float", "floral", "fluff", "focus", "forbid",
    "force", "forecast", "forget", "formal", "fortune", "forward", "founder", "fraction",
    "fragment", "frequent", "freshman", "friar", "fridge", "friendly", "frost", "froth",
    "frozen", "fumes", "funding", "furl", "fused", "galaxy", "game", "garbage", "garden",
    "garlic", "gasoline", "gather", "general", "genius", "genre", "genuine", "geology",
    "gesture", "glad", "glance", "glasses", "glen", "glimpse", "goat", "golden",
    "graduate", "grant", "grasp", "gravity", "gray", "greatest", "grief", "grill", "grin",
    "grocery", "gross", "group", "grownup", "grumpy", "guard", "guest", "guilt", "guitar",
    "gums", "hairy", "hamster", "hand", "hanger", "harvest", "have", "havoc", "hawk",
    "hazard", "headset", "health", "hearing", "heat", "helpful", "herald", "herd",
    "hesitate", "hobo", "holiday", "holy", "home", "hormone", "hospital", "hour", "huge",
    "human", "humidity", "hunting", "husband", "hush", "husky", "hybrid", "idea",
    "identify", "idle", "image", "impact", "imply", "improve", "impulse", "include",
    "income", "increase", "index", "indicate", "industry", "infant", "inform", "inherit",
    "injury", "inmate", "insect", "inside", "install", "intend", "intimate", "invasion",
    "involve", "iris", "island", "isolate", "item", "ivory", "jacket", "jerky", "jewelry",
    "join", "judicial", "juice", "jump", "junction", "junior", "junk", "jury", "justice",
    "kernel", "keyboard", "kidney", "kind", "kitchen", "knife", "knit", "laden", "ladle",
    "ladybug", "lair", "lamp", "language", "large", "laser", "laundry", "lawsuit",
    "leader", "leaf", "learn", "leaves", "lecture", "legal", "legend", "legs", "lend",
    "length", "level", "liberty", "library", "license", "lift", "likely", "lilac", "lily",
    "lips", "liquid", "listen", "literary", "living", "lizard", "loan", "lobe",
    "location", "losing", "loud", "loyalty", "luck", "lunar", "lunch", "lungs", "luxury",
    "lying", "lyrics", "machine", "magazine", "maiden", "mailman", "main", "makeup",
    "making", "mama", "manager", "mandate", "mansion", "manual", "marathon", "march",
    "market", "marvel", "mason", "material", "math", "maximum", "mayor", "meaning",
    "medal", "medical", "member", "memory", "mental", "merchant", "merit", "method",
    "metric", "midst", "mild", "military", "mineral", "minister", "miracle", "mixed",
    "mixture", "mobile", "modern", "modify", "moisture", "moment", "morning", "mortgage",
    "mother", "mountain", "mouse", "move", "much", "mule", "multiple", "muscle", "museum",
    "music", "mustang", "nail", "national", "necklace", "negative", "nervous", "network",
    "news", "nuclear", "numb", "numerous", "nylon", "oasis", "obesity", "object",
    "observe", "obtain", "ocean", "often", "olympic", "omit", "oral", "orange", "orbit",
    "order", "ordinary", "organize", "ounce", "oven", "overall", "owner", "paces",
    "pacific", "package", "paid", "painting", "pajamas", "pancake", "pants", "papa",
    "paper", "parcel", "parking", "party", "patent", "patrol", "payment", "payroll",
    "peaceful", "peanut", "peasant", "pecan", "penalty", "pencil", "percent", "perfect",
    "permit", "petition", "phantom", "pharmacy", "photo", "phrase", "physics", "pickup",
    "picture", "piece", "pile", "pink", "pipeline", "pistol", "pitch", "plains", "plan",
    "plastic", "platform", "playoff", "pleasure", "plot", "plunge", "practice", "prayer",
    "preach", "predator", "pregnant", "premium", "prepare", "presence", "prevent",
    "priest", "primary", "priority", "prisoner", "privacy", "prize", "problem", "process",
    "profile", "program", "promise", "prospect", "provide", "prune", "public", "pulse",
    "pumps", "punish", "puny", "pupal", "purchase", "purple", "python", "quantity",
    "quarter", "quick", "quiet", "race", "racism", "radar", "railroad", "rainbow",
    "raisin", "random", "ranked", "rapids", "raspy", "reaction", "realize", "rebound",
    "rebuild", "recall", "receiver", "recover", "regret", "regular", "reject", "relate",
    "remember", "remind", "remove", "render", "repair", "repeat", "replace", "require",
    "rescue", "research", "resident", "response", "result", "retailer", "retreat",
    "reunion", "revenue", "review", "reward", "rhyme", "rhythm", "rich", "rival", "river",
    "robin", "rocky", "romantic", "romp", "roster", "round", "royal", "ruin", "ruler",
    "rumor", "sack", "safari", "salary", "salon", "salt", "satisfy", "satoshi", "saver",
    "says", "scandal", "scared", "scatter", "scene", "scholar", "science", "scout",
    "scramble", "screw", "script", "scroll", "seafood", "season", "secret", "security",
    "segment", "senior", "shadow", "shaft", "shame", "shaped", "sharp", "shelter",
    "sheriff", "short", "should", "shrimp", "sidewalk", "silent", "silver", "similar",
    "simple", "single", "sister", "skin", "skunk", "slap", "slavery", "sled", "slice",
    "slim", "slow", "slush", "smart", "smear", "smell", "smirk", "smith", "smoking",
    "smug", "snake", "snapshot", "sniff", "society", "software", "soldier", "solution",
    "soul", "source", "space", "spark", "speak", "species", "spelling", "spend", "spew",
    "spider", "spill", "spine", "spirit", "spit", "spray", "sprinkle", "square",
    "squeeze", "stadium", "staff", "standard", "starting", "station", "stay", "steady",
    "step", "stick", "stilt", "story", "strategy", "strike", "style", "subject", "submit",
    "sugar", "suitable", "sunlight", "superior", "surface", "surprise", "survive",
    "sweater", "swimming", "swing", "switch", "symbolic", "sympathy", "syndrome",
    "system", "tackle", "tactics", "tadpole", "talent", "task", "taste", "taught", "taxi",
    "teacher", "teammate", "teaspoon", "temple", "tenant", "tendency", "tension",
    "terminal", "testify", "texture", "thank", "that", "theater", "theory", "therapy",
    "thorn", "threaten", "thumb", "thunder", "ticket", "tidy", "timber", "timely", "ting",
    "tofu", "together", "tolerate", "total", "toxic", "tracks", "traffic", "training",
    "transfer", "trash", "traveler", "treat", "trend", "trial", "tricycle", "trip",
    "triumph", "trouble", "true", "trust", "twice", "twin", "type", "typical", "ugly",
    "ultimate", "umbrella", "uncover", "undergo", "unfair", "unfold", "unhappy", "union",
    "universe", "unkind", "unknown", "unusual", "unwrap", "upgrade", "upstairs",
    "username", "usher", "usual", "valid", "valuable", "vampire", "vanish", "various",
    "vegan", "velvet", "venture", "verdict", "verify", "very", "veteran", "vexed",
    "victim", "video", "view", "vintage", "violence", "viral", "visitor", "visual",
    "vitamins", "vocal", "voice", "volume", "voter", "voting", "walnut", "warmth", "warn",
    "watch", "wavy", "wealthy", "weapon", "webcam", "welcome", "welfare", "western",
    "width", "wildlife", "window", "wine", "wireless", "wisdom", "withdraw", "wits",
    "wolf", "woman", "work", "worthy", "wrap", "wrist", "writing", "wrote", "year",
    "yelp", "yield", "yoga", "zero",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(mnemonics: &[&String]) -> Vec<String> {
        mnemonics.iter().map(|m| (*m).clone()).collect()
    }

    fn secret() -> Vec<u8> {
        (0u8..32).map(|i| i.wrapping_mul(37) ^ 0x5a).collect()
    }

    fn params<'a>(groups: &'a [(u8, u8)], group_threshold: u8, identifier: u16) -> SplitParams<'a> {
        SplitParams {
            group_threshold,
            groups,
            passphrase: b"",
            iteration_exponent: 0,
            extendable: true,
            identifier,
        }
    }

    /// Every `k`-element subset of `0..n`.
    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        (0u32..1 << n)
            .filter(|mask| mask.count_ones() as usize == k)
            .map(|mask| (0..n).filter(|i| mask >> i & 1 == 1).collect())
            .collect()
    }

    fn assert_any_k_of_n_recovers(k: u8, n: u8) {
        let secret = secret();
        let shares = split(&secret, k, n).expect("valid parameters");
        assert_eq!(shares.len(), usize::from(n));
        for subset in subsets(usize::from(n), usize::from(k)) {
            let chosen: Vec<String> = subset.iter().map(|&i| shares[i].clone()).collect();
            let recovered = combine(&chosen, b"").expect("threshold shares combine");
            assert_eq!(recovered.as_slice(), secret.as_slice(), "subset {subset:?}");
        }
    }

    #[test]
    fn any_two_of_three_shares_recover_the_secret() {
        assert_any_k_of_n_recovers(2, 3);
    }

    #[test]
    fn any_three_of_five_shares_recover_the_secret() {
        assert_any_k_of_n_recovers(3, 5);
    }

    #[test]
    fn a_one_of_one_split_recovers_the_secret() {
        let shares = split(&secret()[..16], 1, 1).expect("valid parameters");
        assert_eq!(shares[0].split(' ').count(), 20);
        assert_eq!(
            combine(&shares, b"").expect("combines").as_slice(),
            &secret()[..16]
        );
    }

    #[test]
    fn fewer_shares_than_the_threshold_are_refused() {
        let shares = split(&secret(), 3, 5).expect("valid parameters");
        let err = combine(&strings(&[&shares[0], &shares[4]]), b"").expect_err("must be refused");
        assert_eq!(
            err,
            Slip39Error::NotEnoughShares {
                group: None,
                needed: 3,
                given: 2
            }
        );
        assert_eq!(err.to_string(), "not enough shares: 3 needed, 2 given");
    }

    #[test]
    fn more_shares_than_the_threshold_are_refused_as_the_spec_requires() {
        let shares = split(&secret(), 2, 3).expect("valid parameters");
        let err = combine(&shares, b"").expect_err("must be refused");
        assert_eq!(
            err,
            Slip39Error::TooManyShares {
                group: None,
                needed: 2,
                given: 3
            }
        );
    }

    #[test]
    fn shares_of_two_different_splits_are_refused_as_different_sets() {
        let mut rng = OsRng;
        let a = generate_mnemonics(&params(&[(2, 3)], 1, 1111), &secret(), &mut rng)
            .expect("valid parameters");
        let b = generate_mnemonics(&params(&[(2, 3)], 1, 2222), &secret(), &mut rng)
            .expect("valid parameters");
        let err = combine(&strings(&[&a[0][0], &b[0][1]]), b"").expect_err("must be refused");
        assert_eq!(err, Slip39Error::DifferentSets { share: 2 });
    }

    #[test]
    fn one_changed_word_fails_the_checksum() {
        let shares = split(&secret(), 2, 3).expect("valid parameters");
        let mut words: Vec<&str> = shares[1].split(' ').collect();
        let index = word_index(words[6]).expect("own word") as usize;
        words[6] = WORDLIST[(index + 1) % 1024];
        let tampered = words.join(" ");
        let err = combine(&[shares[0].clone(), tampered], b"").expect_err("must be refused");
        assert_eq!(err, Slip39Error::InvalidChecksum { share: 2 });
    }

    #[test]
    fn an_unknown_word_is_reported_with_share_and_position() {
        let shares = split(&secret(), 2, 3).expect("valid parameters");
        let typo = shares[1].replacen(' ', " xyzzy ", 1);
        let err = combine(&[shares[0].clone(), typo], b"").expect_err("must be refused");
        let word = "xyzzy".to_owned();
        assert_eq!(
            err,
            Slip39Error::UnknownWord {
                share: 2,
                position: 2,
                word
            }
        );
    }

    #[test]
    fn a_missing_word_is_a_wrong_word_count() {
        let shares = split(&secret()[..16], 2, 3).expect("valid parameters");
        let short = shares[0].rsplit_once(' ').expect("many words").0.to_owned();
        let err = combine(&[short, shares[1].clone()], b"").expect_err("must be refused");
        assert_eq!(
            err,
            Slip39Error::WrongWordCount {
                share: 1,
                words: 19
            }
        );
    }

    #[test]
    fn the_same_share_twice_is_a_duplicate_member_index() {
        let shares = split(&secret(), 2, 3).expect("valid parameters");
        let err = combine(&strings(&[&shares[2], &shares[2]]), b"").expect_err("must be refused");
        assert_eq!(
            err,
            Slip39Error::DuplicateMemberIndex {
                first: 1,
                second: 2
            }
        );
    }

    #[test]
    fn words_are_read_in_any_case_and_with_any_whitespace() {
        let shares = split(&secret(), 2, 3).expect("valid parameters");
        let messy: Vec<String> = shares[..2]
            .iter()
            .map(|s| format!("  {}\n", s.to_uppercase().replace(' ', " \t ")))
            .collect();
        assert_eq!(
            combine(&messy, b"").expect("combines").as_slice(),
            secret().as_slice()
        );
    }

    #[test]
    fn two_of_three_groups_with_a_passphrase_recover_the_secret() {
        let groups = [(1, 1), (2, 3), (3, 5)];
        let split_params = SplitParams {
            passphrase: b"TREZOR",
            extendable: false,
            ..params(&groups, 2, 0x7fff)
        };
        let shares =
            generate_mnemonics(&split_params, &secret(), &mut OsRng).expect("valid parameters");
        let chosen = strings(&[&shares[2][4], &shares[0][0], &shares[2][1], &shares[2][0]]);
        assert_eq!(
            combine(&chosen, b"TREZOR")
                .expect("valid parameters")
                .as_slice(),
            secret().as_slice()
        );
        assert_ne!(
            combine(&chosen, b"other")
                .expect("valid parameters")
                .as_slice(),
            secret().as_slice()
        );

        let one_group = strings(&[&shares[2][4], &shares[2][1], &shares[2][0]]);
        let err = combine(&one_group, b"TREZOR").expect_err("must be refused");
        assert_eq!(
            err,
            Slip39Error::NotEnoughGroups {
                needed: 2,
                given: 1
            }
        );
        let short = strings(&[&shares[0][0], &shares[2][1]]);
        let err = combine(&short, b"TREZOR").expect_err("must be refused");
        assert_eq!(
            err.to_string(),
            "not enough shares in group 3: 3 needed, 1 given"
        );
    }

    #[test]
    fn a_one_of_n_split_is_refused() {
        let err = split(&secret(), 1, 3).expect_err("must be refused");
        assert!(matches!(err, Slip39Error::InvalidParameters(_)), "{err}");
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        for (len, k, n) in [(15, 2, 3), (17, 2, 3), (16, 0, 3), (16, 4, 3), (16, 2, 17)] {
            let err = split(&vec![7; len], k, n).expect_err("must be refused");
            assert!(
                matches!(err, Slip39Error::InvalidParameters(_)),
                "{len} {k} {n}"
            );
        }
    }

    #[test]
    fn garbage_input_is_refused_without_panicking() {
        let mut rng = OsRng;
        for _ in 0..300 {
            let len = (rng.next_u32() % 40) as usize;
            let words: Vec<&str> = (0..len)
                .map(|_| WORDLIST[(rng.next_u32() % 1024) as usize])
                .collect();
            assert!(combine(&[words.join(" ")], b"").is_err());
        }
        for input in [
            "",
            " ",
            "academic",
            "ACADEMIC\u{fffd}",
            "écran",
            "toolongwordhere",
        ] {
            assert!(combine(&[input.to_owned()], b"").is_err());
        }
        assert_eq!(
            combine(&[], b"").expect_err("must be refused"),
            Slip39Error::NoShares
        );
    }

    #[test]
    fn gf256_multiplication_matches_shift_and_add_and_division_inverts_it() {
        fn slow_mul(mut a: u8, mut b: u8) -> u8 {
            let mut product = 0;
            while b != 0 {
                if b & 1 == 1 {
                    product ^= a;
                }
                let carry = a & 0x80 != 0;
                a <<= 1;
                if carry {
                    a ^= 0x1b;
                }
                b >>= 1;
            }
            product
        }
        for a in 0..=255u8 {
            for b in 1..=255u8 {
                let product = gf_mul(a, b);
                assert_eq!(product, slow_mul(a, b), "{a} * {b}");
                assert_eq!(gf_div(product, b), a, "{a} * {b} / {b}");
            }
        }
    }

    #[test]
    fn gf256_tables_are_inverse_to_each_other() {
        for (i, &power) in GF256.exp.iter().enumerate() {
            assert_eq!(usize::from(GF256.log[usize::from(power)]), i);
        }
    }

    #[test]
    fn feistel_decryption_inverts_encryption() {
        let cipher = CipherParams {
            identifier: 7945,
            extendable: false,
            iteration_exponent: 0,
        };
        let ems = cipher.encrypt(&secret(), b"TREZOR");
        assert_ne!(ems.as_slice(), secret().as_slice());
        assert_eq!(
            cipher.decrypt(&ems, b"TREZOR").as_slice(),
            secret().as_slice()
        );
    }

    #[test]
    fn share_values_round_trip_through_words() {
        for len in [16, 18, 32, 64] {
            let value: Vec<u8> = (0..len).map(|i| (i * 89 + 13) as u8).collect();
            let words = value_to_words(&value);
            let padding = words.len() * RADIX_BITS - len * 8;
            let back = words_to_value(&words, padding).expect("zero padding");
            assert_eq!(back.as_slice(), value.as_slice());
        }
    }

    #[test]
    fn the_wordlist_is_the_published_one() {
        use sha2::Digest;
        let text: String = WORDLIST.iter().map(|w| format!("{w}\n")).collect();
        let hash = Sha256::digest(text.as_bytes());
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        // sha256 of wordlist.txt in shamir-mnemonic 0.3.0 and satoshilabs/slips.
        assert_eq!(
            hex,
            "bcc4555340332d169718aed8bf31dd9d5248cb7da6e5d355140ef4f1e601eec3"
        );
        assert!(WORDLIST.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
