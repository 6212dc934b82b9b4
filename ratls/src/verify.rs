//! The verification pipeline: the one place that turns peer evidence into a [`VerifiedPeer`].
//!
//! One linear sequence, every step fail-closed, every rejection naming its check:
//!
//! 1. `evidence`, `self-signature`, `binding`, `certificate-validity`: extract the quote from
//!    the RA-TLS certificate, check that its report data commits to the certificate's public key
//!    ([`crate::cert::extract_bound`]) and that `now` is inside the certificate's validity.
//! 2. `collateral`, `collateral-expiry`: collateral for the quote's platform, within its
//!    validity window (plus the policy's grace period, if any).
//! 3. `dcap-signature`, `revocation`: dcap-qvl checks the PCK chain to the trust anchor (Intel's
//!    SGX Root CA unless [`crate::danger`] says otherwise), the CRLs, the TCB info and QE
//!    identity signatures, the QE report and the quote signature. A quote whose platform half
//!    (everything but the report body and its signature) dcap-qvl already accepted against the
//!    same collateral only has its report signature checked ([`platform`]).
//! 4. `tcb-status`, `advisory`: dcap-qvl applies no TCB policy; the policy's accepted statuses
//!    (default UpToDate only) and rejected advisories are applied here. Revoked is terminal.
//! 5. `measurement-policy`: the report body against `ra_config` (`sgx_mrs`, debug).
//!
//! The clock is an input. Successful results are cached per certificate until the collateral's
//! `nextUpdate` (at most [`MAX_PEER_CACHE_SECS`]), so many calls on one connection cost one
//! verification.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::verify::QuoteVerifier;
use sha2::{Digest as _, Sha256};

/// The root the verifier checks against, re-exported where the verifier is built from it.
pub use crate::anchor::TrustAnchor;
use crate::cert::{self, CertError};
use crate::collateral::{self, CollateralError, CollateralSource};
use crate::policy::{PolicyMatch, PolicyRejection, RaPolicy, TcbPolicy};
use crate::quote::{Quote, QuoteError, ReportBody};

mod platform;

use platform::PlatformCache;
pub use platform::{MAX_CACHED_PLATFORMS, MAX_PLATFORM_CACHE_SECS};

/// A verified peer stays cached at most this long, even if its collateral lives longer.
pub const MAX_PEER_CACHE_SECS: u64 = 600;
/// At most this many verified certificates are cached.
pub const MAX_CACHED_PEERS: usize = 4096;

/// A peer whose evidence passed every check. Only this module constructs it.
#[derive(Debug, Clone)]
pub struct VerifiedPeer {
    body: ReportBody,
    tcb_status: String,
    advisory_ids: Vec<String>,
    matched: PolicyMatch,
    evidence_format: Option<cert::EvidenceFormat>,
    valid_until: u64,
    anchor_is_intel: bool,
}

impl VerifiedPeer {
    /// The peer enclave's report body (measurements, SVNs, report data).
    pub fn report_body(&self) -> &ReportBody {
        &self.body
    }

    /// The platform's TCB status as DCAP reported it (accepted by the policy).
    pub fn tcb_status(&self) -> &str {
        &self.tcb_status
    }

    /// Intel security advisories that apply to the platform's TCB level.
    pub fn advisory_ids(&self) -> &[String] {
        &self.advisory_ids
    }

    /// The `sgx_mrs` entry that matched.
    pub fn matched(&self) -> &PolicyMatch {
        &self.matched
    }

    /// The RA-TLS certificate format, when the evidence came in a certificate.
    pub fn evidence_format(&self) -> Option<cert::EvidenceFormat> {
        self.evidence_format
    }

    /// Unix time after which this verification must be redone.
    pub fn valid_until(&self) -> u64 {
        self.valid_until
    }

    /// False when the quote chained to a non-Intel (simulated or test) root.
    pub fn anchored_at_intel(&self) -> bool {
        self.anchor_is_intel
    }
}

/// What DCAP said about a quote, before any policy. Carries no authority by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcapVerdict {
    /// TCB status string as in Intel's TCB info (`UpToDate`, `OutOfDate`, …).
    pub tcb_status: String,
    /// Advisory IDs for the platform's TCB level.
    pub advisory_ids: Vec<String>,
    /// Unix time the collateral goes stale (earliest nextUpdate).
    pub collateral_next_update: u64,
    /// The time DCAP verified at: `now`, or the collateral's end when inside the grace period.
    pub verified_at: u64,
}

/// Which check rejected the evidence, with the details a person needs.
#[derive(Debug)]
#[non_exhaustive]
pub enum VerifyError {
    /// The certificate or its evidence could not be read, or its binding failed.
    Evidence(CertError),
    /// The quote is not a v3 SGX quote.
    Quote(QuoteError),
    /// No collateral could be obtained.
    Collateral(CollateralError),
    /// The collateral is outside its validity window.
    CollateralWindow { detail: String, grace_secs: u64 },
    /// A certificate in the chain is revoked, or the TCB status is Revoked.
    Revoked { detail: String },
    /// DCAP rejected the quote: chain, signature, TCB info or QE identity.
    Dcap { detail: String, anchor: String },
    /// The TCB status is not in the accepted list.
    TcbStatus {
        status: String,
        accepted: Vec<String>,
    },
    /// The platform is affected by an advisory the policy rejects.
    Advisory { id: String, status: String },
    /// No `sgx_mrs` entry matched the report body.
    Policy(PolicyRejection),
}

impl VerifyError {
    /// True when the same evidence may pass shortly: its collateral is being fetched, the
    /// fetch limit was reached, or a failed fetch is in its backoff. A server should answer
    /// UNAVAILABLE (retry), not UNAUTHENTICATED; nothing about the peer was judged.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Collateral(
                CollateralError::Pending { .. }
                    | CollateralError::Busy { .. }
                    | CollateralError::Backoff { .. }
            )
        )
    }

    /// The name of the failing check, stable for logs and tests.
    pub fn check(&self) -> &'static str {
        match self {
            Self::Evidence(e) => cert_check(e),
            Self::Quote(_) => "quote-format",
            // The chain to the anchor is step 3's check, made early so nothing is fetched
            // for an unanchored quote.
            Self::Collateral(CollateralError::PckChain { .. }) => "dcap-signature",
            Self::Collateral(_) => "collateral",
            Self::CollateralWindow { .. } => "collateral-expiry",
            Self::Revoked { .. } => "revocation",
            Self::Dcap { .. } => "dcap-signature",
            Self::TcbStatus { .. } => "tcb-status",
            Self::Advisory { .. } => "advisory",
            Self::Policy(_) => "measurement-policy",
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attestation check `{}` failed: ", self.check())?;
        match self {
            Self::Evidence(e) => write!(f, "{e}"),
            Self::Quote(e) => write!(f, "{e}"),
            Self::Collateral(e) => write!(f, "{e}"),
            Self::CollateralWindow { detail, grace_secs } => write!(
                f,
                "{detail} (grace period {grace_secs} s; refresh the collateral, or raise ra_config \"collateral_grace_secs\")"
            ),
            Self::Revoked { detail } => write!(f, "{detail}"),
            Self::Dcap { detail, anchor } => {
                write!(f, "{detail} (trust anchor: {anchor})")
            }
            Self::TcbStatus { status, accepted } => write!(
                f,
                "TCB status {status} is not accepted (accepted: {}; knob: ra_config \"tcb_statuses\")",
                accepted.join(", ")
            ),
            Self::Advisory { id, status } => write!(
                f,
                "platform (TCB status {status}) is affected by {id}, which ra_config \"reject_advisories\" rejects"
            ),
            Self::Policy(rejection) => write!(f, "{rejection} (knob: ra_config \"sgx_mrs\")"),
        }
    }
}

impl std::error::Error for VerifyError {}

impl From<CertError> for VerifyError {
    fn from(e: CertError) -> Self {
        Self::Evidence(e)
    }
}

impl From<QuoteError> for VerifyError {
    fn from(e: QuoteError) -> Self {
        Self::Quote(e)
    }
}

impl From<CollateralError> for VerifyError {
    fn from(e: CollateralError) -> Self {
        Self::Collateral(e)
    }
}

impl From<PolicyRejection> for VerifyError {
    fn from(e: PolicyRejection) -> Self {
        Self::Policy(e)
    }
}

/// The verifier: a trust anchor, a collateral source, a policy and a cache of results.
pub struct Verifier {
    anchor: TrustAnchor,
    qvl: QuoteVerifier,
    collateral: Arc<dyn CollateralSource>,
    policy: RaPolicy,
    cache: Mutex<PeerCache>,
    platforms: Mutex<PlatformCache>,
    full_dcap: AtomicU64,
    platform_hits: AtomicU64,
}

/// How often the verifier did the full DCAP work and how often it reused a platform verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifierStats {
    /// Quotes dcap-qvl verified in full (chain, CRLs, collateral signatures, QE, ISV).
    pub full_dcap: u64,
    /// Quotes whose platform half was verified before: only the ISV signature was checked.
    pub platform_hits: u64,
}

impl Verifier {
    /// A verifier that trusts `anchor`, gets collateral from `collateral` and applies `policy`.
    pub fn new(
        anchor: TrustAnchor,
        collateral: Arc<dyn CollateralSource>,
        policy: RaPolicy,
    ) -> Self {
        let qvl = anchor.quote_verifier();
        Self {
            anchor,
            qvl,
            collateral,
            policy,
            cache: Mutex::default(),
            platforms: Mutex::default(),
            full_dcap: AtomicU64::new(0),
            platform_hits: AtomicU64::new(0),
        }
    }

    /// Counts of full DCAP verifications and platform-cache hits so far.
    pub fn stats(&self) -> VerifierStats {
        VerifierStats {
            full_dcap: self.full_dcap.load(Ordering::Relaxed),
            platform_hits: self.platform_hits.load(Ordering::Relaxed),
        }
    }

    /// The policy this verifier applies.
    pub fn policy(&self) -> &RaPolicy {
        &self.policy
    }

    /// The trust anchor quotes must chain to.
    pub fn trust_anchor(&self) -> &TrustAnchor {
        &self.anchor
    }

    /// The collateral source.
    pub fn collateral_source(&self) -> &Arc<dyn CollateralSource> {
        &self.collateral
    }

    /// Runs the whole pipeline on an RA-TLS certificate (DER), or returns the cached result
    /// for the same certificate while it is still valid.
    pub fn verify_certificate(
        &self,
        cert_der: &[u8],
        now: u64,
    ) -> Result<VerifiedPeer, VerifyError> {
        let key: [u8; 32] = Sha256::digest(cert_der).into();
        self.cached_or_verify(key, now, || self.verify_uncached(cert_der, now))
    }

    /// [`Verifier::verify_certificate`] for a certificate handed over as PEM text, as gRPC
    /// C-core hands over its TLS peer's. The result is cached under the text itself, so every
    /// later call with the same text costs one hash and no base64 decoding.
    pub fn verify_certificate_pem(
        &self,
        cert_pem: &[u8],
        now: u64,
    ) -> Result<VerifiedPeer, VerifyError> {
        self.cached_or_verify(pem_cache_key(cert_pem), now, || {
            let text = std::str::from_utf8(cert_pem).map_err(|e| {
                VerifyError::Evidence(CertError::Pem {
                    what: "certificate",
                    detail: format!("not UTF-8: {e}"),
                })
            })?;
            let der = cert::der_from_pem(text)?;
            self.verify_uncached(&der, now)
        })
    }

    /// The cached result for a certificate verified earlier by
    /// [`Verifier::verify_certificate_pem`] with the same text, if still valid at `now`.
    pub fn cached_pem(&self, cert_pem: &[u8], now: u64) -> Option<VerifiedPeer> {
        lock(&self.cache).get(&pem_cache_key(cert_pem), now)
    }

    /// The cached result under `key` while valid at `now`; else `verify`'s, cached on success.
    fn cached_or_verify(
        &self,
        key: [u8; 32],
        now: u64,
        verify: impl FnOnce() -> Result<VerifiedPeer, VerifyError>,
    ) -> Result<VerifiedPeer, VerifyError> {
        if let Some(peer) = lock(&self.cache).get(&key, now) {
            return Ok(peer);
        }
        let peer = verify()?;
        lock(&self.cache).insert(key, peer.clone());
        Ok(peer)
    }

    /// The whole pipeline on a certificate, without the cache.
    fn verify_uncached(&self, cert_der: &[u8], now: u64) -> Result<VerifiedPeer, VerifyError> {
        let evidence = cert::extract_bound(cert_der)?;
        evidence.check_validity(now)?;
        let mut peer = self.verify_parsed(
            &evidence.quote_bytes,
            &evidence.quote,
            Some(evidence.format),
            evidence.stapled_collateral(),
            now,
        )?;
        let not_after = u64::try_from(evidence.not_after_unix).unwrap_or(0);
        peer.valid_until = peer.valid_until.min(not_after);
        Ok(peer)
    }

    /// The cached result for a certificate verified earlier, if still valid at `now`.
    pub fn cached(&self, cert_der: &[u8], now: u64) -> Option<VerifiedPeer> {
        let key: [u8; 32] = Sha256::digest(cert_der).into();
        lock(&self.cache).get(&key, now)
    }

    /// Runs steps 2 to 5 on a bare quote (no certificate, so no key binding).
    pub fn verify_quote(&self, quote_bytes: &[u8], now: u64) -> Result<VerifiedPeer, VerifyError> {
        let quote = Quote::parse(quote_bytes)?;
        self.verify_parsed(quote_bytes, &quote, None, None, now)
    }

    fn verify_parsed(
        &self,
        quote_bytes: &[u8],
        quote: &Quote,
        evidence_format: Option<cert::EvidenceFormat>,
        staple: Option<&[u8]>,
        now: u64,
    ) -> Result<VerifiedPeer, VerifyError> {
        let tcb = self.policy.tcb();
        let collateral = match staple {
            Some(staple) => self.collateral.collateral_with_staple(quote, staple, now)?,
            None => self.collateral.collateral(quote, now)?,
        };
        let verdict = self.dcap_cached(quote_bytes, quote, &collateral, now, tcb.grace_secs())?;
        check_tcb(tcb, &verdict)?;
        let matched = self.policy.evaluate(&quote.body)?;
        Ok(VerifiedPeer {
            body: quote.body.clone(),
            tcb_status: verdict.tcb_status,
            advisory_ids: verdict.advisory_ids,
            matched,
            evidence_format,
            valid_until: verdict
                .collateral_next_update
                .max(now)
                .min(now + MAX_PEER_CACHE_SECS),
            anchor_is_intel: self.anchor.is_intel(),
        })
    }
}

impl Verifier {
    /// Step 3 through the platform cache ([`platform`]): a quote whose platform half dcap-qvl
    /// already accepted against this collateral costs one ISV signature check.
    fn dcap_cached(
        &self,
        quote_bytes: &[u8],
        quote: &Quote,
        collateral: &Arc<QuoteCollateralV3>,
        now: u64,
        grace_secs: u64,
    ) -> Result<DcapVerdict, VerifyError> {
        let key = platform::platform_key(quote_bytes);
        // One statement, so the lock is released before the signature check.
        let candidate = lock(&self.platforms).candidate(&key, collateral, now);
        if let Some(verdict) = candidate {
            if !platform::isv_signature_valid(quote_bytes, quote) {
                return Err(VerifyError::Dcap {
                    detail: "ISV enclave report signature is invalid: the report body is not \
                             signed by the platform's attestation key"
                        .into(),
                    anchor: self.anchor.describe(),
                });
            }
            self.platform_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(verdict);
        }
        let verdict = dcap_verify_with(
            &self.qvl,
            &self.anchor,
            quote_bytes,
            collateral,
            now,
            grace_secs,
        )?;
        self.full_dcap.fetch_add(1, Ordering::Relaxed);
        lock(&self.platforms).insert(key, collateral, &verdict, now);
        Ok(verdict)
    }
}

/// Steps 2 and 3 on their own: the collateral window, then dcap-qvl. No policy is applied;
/// the result unlocks nothing. Used by the verifier and by `ratls inspect`.
pub fn dcap_verify(
    anchor: &TrustAnchor,
    quote_bytes: &[u8],
    collateral: &QuoteCollateralV3,
    now: u64,
    grace_secs: u64,
) -> Result<DcapVerdict, VerifyError> {
    dcap_verify_with(
        &anchor.quote_verifier(),
        anchor,
        quote_bytes,
        collateral,
        now,
        grace_secs,
    )
}

/// Step 4 on its own: the accepted TCB statuses and rejected advisories.
pub fn check_tcb(tcb: &TcbPolicy, verdict: &DcapVerdict) -> Result<(), VerifyError> {
    if verdict.tcb_status == "Revoked" {
        return Err(VerifyError::Revoked {
            detail: "the platform's TCB status is Revoked".into(),
        });
    }
    if !tcb.accepts_status(&verdict.tcb_status) {
        return Err(VerifyError::TcbStatus {
            status: verdict.tcb_status.clone(),
            accepted: tcb
                .accepted_statuses()
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
        });
    }
    if let Some(id) = tcb.rejected_advisory(&verdict.advisory_ids) {
        return Err(VerifyError::Advisory {
            id: id.to_owned(),
            status: verdict.tcb_status.clone(),
        });
    }
    Ok(())
}

fn dcap_verify_with(
    qvl: &QuoteVerifier,
    anchor: &TrustAnchor,
    quote_bytes: &[u8],
    collateral: &QuoteCollateralV3,
    now: u64,
    grace_secs: u64,
) -> Result<DcapVerdict, VerifyError> {
    let (at, next_update) = verification_time(collateral, now, grace_secs)?;
    let report = qvl.verify(quote_bytes, collateral, at).map_err(|e| {
        // webpki's error survives dcap-qvl's `anyhow` wrapping (`Error::msg`, `context`).
        let webpki = e.downcast_ref::<dcap_qvl_webpki::Error>().cloned();
        classify(webpki.as_ref(), format!("{e:#}"), anchor)
    })?;
    Ok(DcapVerdict {
        tcb_status: report.status,
        advisory_ids: report.advisory_ids,
        collateral_next_update: next_update,
        verified_at: at,
    })
}

/// The time to verify at, and the collateral's end (the earliest `nextUpdate` of the TCB info,
/// the QE identity and both CRLs). Before that end, verification happens at `now`. From it on,
/// inside the grace period, verification happens as of the collateral's last valid second
/// (`end - 1`: webpki treats a CRL as expired at its `nextUpdate` itself); outside, it fails.
fn verification_time(
    c: &QuoteCollateralV3,
    now: u64,
    grace_secs: u64,
) -> Result<(u64, u64), VerifyError> {
    let unreadable = |e: collateral::WindowError| VerifyError::CollateralWindow {
        detail: e.to_string(),
        grace_secs,
    };
    let window =
        |json: &str, what: &'static str| collateral::json_window(json, what).map_err(unreadable);
    let (tcb_issue, tcb_next) = window(&c.tcb_info, "TCB info")?;
    let (qe_issue, qe_next) = window(&c.qe_identity, "QE identity")?;
    let (what, issue) = if tcb_issue >= qe_issue {
        ("TCB info", tcb_issue)
    } else {
        ("QE identity", qe_issue)
    };
    if now < issue {
        return Err(VerifyError::CollateralWindow {
            detail: format!("{what} is not yet valid: issued at {issue}, now {now}"),
            grace_secs,
        });
    }
    let (what, json_next) = if tcb_next <= qe_next {
        ("TCB info", tcb_next)
    } else {
        ("QE identity", qe_next)
    };
    let earliest = collateral::next_update(c).map_err(unreadable)?;
    let (what, next) = if earliest < json_next {
        ("a CRL", earliest)
    } else {
        (what, json_next)
    };
    if now < next {
        return Ok((now, next));
    }
    if now - next <= grace_secs {
        return Ok((next.saturating_sub(1), next));
    }
    Err(VerifyError::CollateralWindow {
        detail: format!(
            "{what} expired: nextUpdate {next}, now {now} ({} s late)",
            now - next
        ),
        grace_secs,
    })
}

/// The check a certificate error belongs to.
fn cert_check(e: &CertError) -> &'static str {
    match e {
        CertError::Evidence { .. } => "quote-format",
        CertError::Binding { .. } | CertError::Disagreement { .. } => "binding",
        CertError::SelfSignature { .. } => "self-signature",
        CertError::Validity { .. } => "certificate-validity",
        CertError::TooLarge { .. }
        | CertError::Parse { .. }
        | CertError::NoEvidence
        | CertError::CriticalExtension { .. }
        | CertError::UnsupportedKey { .. }
        | CertError::Encoding { .. }
        | CertError::Pem { .. } => "evidence",
    }
}

/// dcap-qvl 0.7.1's whole message when the converged TCB status is Revoked (`verify.rs`,
/// `bail!`): it carries no structured form, so the wording is pinned by
/// `ratls/tests/dcap_errors.rs`, which fails when dcap-qvl's text changes.
pub const DCAP_QVL_TCB_REVOKED: &str = "TCB status is invalid: Revoked";

/// Revocation from structured results: webpki's `CertRevoked` (a certificate of the PCK chain,
/// or the root, is on a CRL), else dcap-qvl's exact Revoked-TCB message; anything else is a
/// DCAP failure.
fn classify(
    webpki: Option<&dcap_qvl_webpki::Error>,
    detail: String,
    anchor: &TrustAnchor,
) -> VerifyError {
    let tcb_revoked = detail.ends_with(DCAP_QVL_TCB_REVOKED);
    if matches!(webpki, Some(dcap_qvl_webpki::Error::CertRevoked)) || tcb_revoked {
        VerifyError::Revoked { detail }
    } else {
        VerifyError::Dcap {
            detail,
            anchor: anchor.describe(),
        }
    }
}

#[derive(Default)]
struct PeerCache {
    peers: HashMap<[u8; 32], VerifiedPeer>,
    order: VecDeque<[u8; 32]>,
}

impl PeerCache {
    fn get(&self, key: &[u8; 32], now: u64) -> Option<VerifiedPeer> {
        self.peers.get(key).filter(|p| p.valid_until > now).cloned()
    }

    /// Inserts in O(1): when full, the oldest entries go first (first in, first out). Expired
    /// entries are never returned by [`PeerCache::get`] and leave in turn; scanning for them
    /// on every insert would cost a pass over the whole cache per new client.
    fn insert(&mut self, key: [u8; 32], peer: VerifiedPeer) {
        if let Some(slot) = self.peers.get_mut(&key) {
            *slot = peer;
            return;
        }
        while self.peers.len() >= MAX_CACHED_PEERS {
            match self.order.pop_front() {
                Some(oldest) => self.peers.remove(&oldest),
                None => break,
            };
        }
        self.peers.insert(key, peer);
        self.order.push_back(key);
    }
}

/// The peer-cache key of a certificate's PEM text. DER keys are the bare SHA-256 of the DER;
/// the prefix keeps the two kinds of key apart.
fn pem_cache_key(cert_pem: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"ratls peer cache: PEM\0")
        .chain_update(cert_pem)
        .finalize()
        .into()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every cache update is a single insert/remove, so a poisoned lock still guards a
    // consistent map.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = include_bytes!("../testdata/dcap-sample/sgx_quote");

    fn peer(valid_until: u64) -> VerifiedPeer {
        VerifiedPeer {
            body: Quote::parse(SAMPLE).unwrap().body,
            tcb_status: "UpToDate".into(),
            advisory_ids: Vec::new(),
            matched: PolicyMatch {
                index: 0,
                name: None,
            },
            evidence_format: None,
            valid_until,
            anchor_is_intel: false,
        }
    }

    fn key(i: usize) -> [u8; 32] {
        Sha256::digest(i.to_le_bytes()).into()
    }

    #[test]
    fn a_full_peer_cache_drops_its_oldest_entries_first_and_stays_bounded() {
        let mut cache = PeerCache::default();
        for i in 0..MAX_CACHED_PEERS + 10 {
            cache.insert(key(i), peer(100));
        }
        assert_eq!(cache.peers.len(), MAX_CACHED_PEERS);
        assert_eq!(cache.order.len(), MAX_CACHED_PEERS);
        assert!((0..10).all(|i| cache.get(&key(i), 1).is_none()));
        assert!(cache.get(&key(10), 1).is_some());
        assert!(cache.get(&key(MAX_CACHED_PEERS + 9), 1).is_some());
    }

    #[test]
    fn re_caching_a_peer_replaces_it_without_growing_the_cache() {
        let mut cache = PeerCache::default();
        cache.insert(key(1), peer(10));
        cache.insert(key(1), peer(20));
        assert_eq!((cache.peers.len(), cache.order.len()), (1, 1));
        assert_eq!(cache.get(&key(1), 15).unwrap().valid_until, 20);
    }

    #[test]
    fn an_expired_peer_is_never_returned() {
        let mut cache = PeerCache::default();
        cache.insert(key(1), peer(10));
        assert!(cache.get(&key(1), 9).is_some());
        assert!(cache.get(&key(1), 10).is_none());
    }
}
