//! Socket addresses and name resolution: the parts of the network
//! capability that are plain system calls whatever waits for the sockets.

use socket2::{Domain, SockAddr};
use weft_core::net::Addr;
use weft_core::{Error, ErrorKind, NetError, Result};

/// The socket address of `addr` and the domain a socket for it needs. A
/// Unix path too long for `sockaddr_un` is an invalid address.
pub fn to_sockaddr(addr: &Addr) -> Result<(SockAddr, Domain)> {
    match addr {
        Addr::Ip(a) => Ok((SockAddr::from(*a), Domain::for_address(*a))),
        Addr::Unix(p) => SockAddr::unix(p)
            .map(|s| (s, Domain::UNIX))
            .map_err(|e| Error::with_source(ErrorKind::Net(NetError::InvalidAddress), e)),
    }
}

/// The weft address of a socket address; an unnamed Unix socket has the
/// empty path.
pub fn from_sockaddr(a: &SockAddr) -> Addr {
    if let Some(ip) = a.as_socket() {
        Addr::Ip(ip)
    } else {
        Addr::Unix(a.as_pathname().map(|p| p.to_path_buf()).unwrap_or_default())
    }
}

/// Resolves `host` with `getaddrinfo(3)` on a system thread (it blocks),
/// suspending only the calling fiber. `service` is a port number, `http`
/// or `https`; anything else fails with [`NetError::ResolveFailed`].
pub fn getaddrinfo(host: &str, service: &str) -> Result<Vec<Addr>> {
    let port: u16 = match service.parse() {
        Ok(p) => p,
        Err(_) => match service {
            "http" => 80,
            "https" => 443,
            _ => {
                return Err(Error::msg(
                    ErrorKind::Net(NetError::ResolveFailed),
                    format!("unknown service {service:?}"),
                ))
            }
        },
    };
    let host = host.to_string();
    weft_core::systhread::run(move || {
        use std::net::ToSocketAddrs;
        (host.as_str(), port)
            .to_socket_addrs()
            .map(|it| it.map(Addr::Ip).collect::<Vec<_>>())
            .map_err(|e| Error::with_source(ErrorKind::Net(NetError::ResolveFailed), e))
    })?
}
