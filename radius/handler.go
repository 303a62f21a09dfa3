package radius

import (
	"net/netip"
	"time"

	"layeh.com/radius"
)

// Request is a verified request: it came from a known client, its framing
// and Message-Authenticator were checked, and it is not a duplicate.
//
// Its attribute values point into the datagram's buffer, which the server
// reuses for another request (after zeroing it) once the handler returns:
// they are valid only during ServeRADIUS. Copy what must be kept (the
// conversation's State, the access-log fields and the joined EAP message
// are copies), and write the response before returning.
type Request struct {
	*radius.Packet // Secret is the client's shared secret

	Client     *Client
	RemoteAddr netip.AddrPort
	Received   time.Time

	port portKind // the UDP socket's kind; portAny over RadSec
}

// ResponseWriter sends the one response to a request. The server completes
// every response the same way: Message-Authenticator first, the attributes
// given, then the request's Proxy-State attributes in order, and the
// Response Authenticator; the encoded bytes are cached for duplicates. A
// handler that does not call Write drops the request silently.
type ResponseWriter interface {
	Write(code radius.Code, attrs radius.Attributes) error
}

// Handler answers verified requests. It owns the decisions; the Server owns
// the socket, the client table, verification and the duplicate cache.
type Handler interface {
	ServeRADIUS(w ResponseWriter, r *Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w ResponseWriter, r *Request)

// ServeRADIUS calls f(w, r).
func (f HandlerFunc) ServeRADIUS(w ResponseWriter, r *Request) { f(w, r) }
