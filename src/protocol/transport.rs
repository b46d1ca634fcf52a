//! The SockJS transports by name: what a session's receiver speaks, which
//! [`Config::disable`](crate::Config::disable) switches off and which the
//! metrics label.

/// A SockJS transport (docs/protocol.md §6.0).
///
/// Every session is opened by one; [`Config::disable`](crate::Config::disable)
/// switches one off, and the `transport` label of the
/// [metrics](crate::metrics) is its [`name`](Self::name).
///
/// # Examples
///
/// ```
/// use actix_sockjs::{Config, Transport};
///
/// let config = Config::default().disable(Transport::HtmlFile).disable(Transport::JsonpPolling);
/// assert!(!config.is_enabled(Transport::HtmlFile));
/// assert!(config.is_enabled(Transport::WebSocket));
/// assert_eq!(Transport::XhrStreaming.name(), "xhr_streaming");
/// assert!(Transport::RawWebSocket.is_websocket());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// The SockJS-framed WebSocket (`/<server>/<session>/websocket`), also
    /// over the legacy hixie-76 handshake.
    WebSocket,
    /// The raw WebSocket (`<prefix>/websocket`): messages without SockJS frames.
    RawWebSocket,
    /// XHR long-polling (`xhr`, with `xhr_send`).
    XhrPolling,
    /// XHR streaming (`xhr_streaming`, with `xhr_send`).
    XhrStreaming,
    /// EventSource (`eventsource`, with `xhr_send`).
    EventSource,
    /// The htmlfile iframe transport (`htmlfile`, with `xhr_send`).
    HtmlFile,
    /// JSONP polling (`jsonp`, with `jsonp_send`).
    JsonpPolling,
}

impl Transport {
    /// Every transport, in declaration order.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::{Config, Transport};
    ///
    /// // WebSockets only.
    /// let config = Transport::ALL
    ///     .into_iter()
    ///     .filter(|t| !t.is_websocket())
    ///     .fold(Config::default(), Config::disable);
    /// assert!(config.is_enabled(Transport::WebSocket));
    /// assert!(!config.is_enabled(Transport::XhrStreaming));
    /// ```
    pub const ALL: [Self; 7] = [
        Self::WebSocket,
        Self::RawWebSocket,
        Self::XhrPolling,
        Self::XhrStreaming,
        Self::EventSource,
        Self::HtmlFile,
        Self::JsonpPolling,
    ];

    /// The transport's name: the last segment of its receiving URL
    /// (`raw_websocket` for the raw WebSocket), and its metrics label.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(actix_sockjs::Transport::JsonpPolling.name(), "jsonp");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::RawWebSocket => "raw_websocket",
            Self::XhrPolling => "xhr",
            Self::XhrStreaming => "xhr_streaming",
            Self::EventSource => "eventsource",
            Self::HtmlFile => "htmlfile",
            Self::JsonpPolling => "jsonp",
        }
    }

    /// The transport of a [`name`](Self::name) (from a configuration
    /// file, say); `None` for any other text.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_sockjs::Transport;
    ///
    /// assert_eq!(Transport::from_name("jsonp"), Some(Transport::JsonpPolling));
    /// assert_eq!(Transport::from_name("JSONP"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether the transport is a WebSocket: one connection for the whole
    /// session, rather than HTTP requests that come and go.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!actix_sockjs::Transport::EventSource.is_websocket());
    /// ```
    pub fn is_websocket(self) -> bool {
        matches!(self, Self::WebSocket | Self::RawWebSocket)
    }

    /// The transport's place in [`ALL`](Self::ALL).
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_with_distinct_names() {
        for (i, t) in Transport::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
        let mut names: Vec<_> = Transport::ALL.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Transport::ALL.len());
    }
}
