//! Webhook endpoints: the URL a receiver gives, and which addresses refbridge refuses to send
//! to (so that a webhook cannot be aimed at refbridge's own network: loopback, private,
//! link-local, unique-local).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest URL accepted (browsers and proxies commonly stop near 2,000).
pub const MAX_URL_LEN: usize = 2048;

/// Why a webhook URL was refused. The messages never repeat the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("must be an absolute http or https URL")]
    NotAUrl,
    #[error("must be at most 2048 characters")]
    TooLong,
    #[error("must use http or https")]
    Scheme,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("must not carry a fragment")]
    Fragment,
    #[error(
        "names a loopback, private, link-local or unique-local address (allowed only with webhooks.allow_private_targets)"
    )]
    PrivateTarget,
}

/// An endpoint's URL: absolute http(s), a host, no credentials or fragment, and when the host
/// is an IP literal, one refbridge may send to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    /// `allow_private`: accept literal addresses [`is_forbidden_target`] refuses (tests,
    /// on-premises receivers). A host name is checked after DNS, at delivery.
    pub fn parse(s: &str, allow_private: bool) -> Result<WebhookUrl, WebhookUrlError> {
        if s.len() > MAX_URL_LEN {
            return Err(WebhookUrlError::TooLong);
        }
        let url = url::Url::parse(s.trim()).map_err(|_| WebhookUrlError::NotAUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WebhookUrlError::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebhookUrlError::Credentials);
        }
        if url.fragment().is_some() {
            return Err(WebhookUrlError::Fragment);
        }
        let literal = match url.host() {
            None => return Err(WebhookUrlError::NotAUrl),
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
                Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
            }
            Some(url::Host::Domain(_)) => None,
        };
        if !allow_private && literal.is_some_and(is_forbidden_target) {
            return Err(WebhookUrlError::PrivateTarget);
        }
        Ok(WebhookUrl(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The host as written (a name, or an IP literal).
    pub fn host(&self) -> Option<url::Host<&str>> {
        self.0.host()
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Addresses a webhook is never sent to (unless allowed): unspecified, loopback, private
/// (RFC 1918), shared (100.64/10), link-local, broadcast and multicast, the IPv6 unique-local
/// and link-local ranges, and IPv4 addresses mapped or translated into IPv6.
pub fn is_forbidden_target(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return forbidden_v4(Ipv4Addr::new(a, b, c, d));
            }
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || a >= 240 // reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_public_http_and_https_urls() {
        for u in [
            "https://cpr.example.com/hooks/refbridge",
            "http://hooks.example.org:8443/x?y=1",
            "https://93.184.216.34/hook",
            "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
        ] {
            let parsed = WebhookUrl::parse(u, false).unwrap();
            assert!(parsed.as_str().starts_with("http"), "{u}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_plain_http_url() {
        let cases = [
            ("not a url", WebhookUrlError::NotAUrl),
            ("ftp://example.com/x", WebhookUrlError::Scheme),
            (
                "https://user:pw@example.com/x",
                WebhookUrlError::Credentials,
            ),
            ("https://example.com/x#frag", WebhookUrlError::Fragment),
            ("file:///etc/passwd", WebhookUrlError::Scheme),
        ];
        for (u, e) in cases {
            assert_eq!(WebhookUrl::parse(u, false), Err(e), "{u}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(
            WebhookUrl::parse(&long, false),
            Err(WebhookUrlError::TooLong)
        );
    }

    #[test]
    fn refuses_private_literals_unless_allowed() {
        for u in [
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "http://10.1.2.3/hook",
            "http://172.16.0.1/hook",
            "http://192.168.1.1/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/hook",
            "http://[fd00::1]/hook",
            "http://[fe80::1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://[64:ff9b::a00:1]/hook",
            "http://2130706433/hook", // 127.0.0.1 as one number
            "http://0x7f.1/hook",
        ] {
            assert_eq!(
                WebhookUrl::parse(u, false),
                Err(WebhookUrlError::PrivateTarget),
                "{u}"
            );
            assert!(WebhookUrl::parse(u, true).is_ok(), "{u}");
        }
    }

    #[test]
    fn forbidden_ranges_are_exactly_the_internal_ones() {
        let ok: [IpAddr; 4] = [
            "8.8.8.8".parse().unwrap(),
            "172.32.0.1".parse().unwrap(),
            "100.128.0.1".parse().unwrap(),
            "2001:4860:4860::8888".parse().unwrap(),
        ];
        for ip in ok {
            assert!(!is_forbidden_target(ip), "{ip}");
        }
        let bad: [IpAddr; 5] = [
            "172.31.255.255".parse().unwrap(),
            "224.0.0.1".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
            "fc00::1".parse().unwrap(),
            "::".parse().unwrap(),
        ];
        for ip in bad {
            assert!(is_forbidden_target(ip), "{ip}");
        }
    }
}
