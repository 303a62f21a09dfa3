package config

// The raw* types mirror the YAML file one to one. They are decoded strictly
// and then validated into Config; nothing outside this package sees them.
// Scalars whose default must be told apart from an explicit value are
// pointers or strings ("" means "not set").

type rawConfig struct {
	DataDir      string        `yaml:"data_dir"`
	Listen       rawListen     `yaml:"listen"`
	Clients      []rawClient   `yaml:"clients"`
	Sites        []rawSite     `yaml:"sites"`
	TLS          rawTLS        `yaml:"tls"`
	TrustAnchors []rawAnchor   `yaml:"trust_anchors"`
	Policy       rawPolicy     `yaml:"policy"`
	Limits       rawLimits     `yaml:"limits"`
	Log          rawLog        `yaml:"log"`
	RadSec       rawRadSec     `yaml:"radsec"`
	Accounting   rawAccounting `yaml:"accounting"`
	DynAuth      rawDynAuth    `yaml:"dynauth"`
	PKI          rawPKI        `yaml:"pki"`
}

type rawListen struct {
	RADIUSAuth string `yaml:"radius_auth"`
	RADIUSAcct string `yaml:"radius_acct"`
	Metrics    string `yaml:"metrics"`
	RadSec     string `yaml:"radsec"`
	// PKI is a pointer: absent gives the default, "" disables.
	PKI *string `yaml:"pki"`
}

type rawClient struct {
	Name                        string   `yaml:"name"`
	Networks                    []string `yaml:"networks"`
	Secret                      string   `yaml:"secret"`
	SecretFile                  string   `yaml:"secret_file"`
	AllowWeakSecret             bool     `yaml:"allow_weak_secret"`
	Site                        string   `yaml:"site"`
	RequireMessageAuthenticator *bool    `yaml:"require_message_authenticator"`
	RadSec                      bool     `yaml:"radsec"`
	RadSecIdentities            []string `yaml:"radsec_identities"`
	CoAPort                     *int     `yaml:"coa_port"`
	DynAuth                     string   `yaml:"dynauth"`
}

type rawSite struct {
	Name  string   `yaml:"name"`
	VLANs rawVLANs `yaml:"vlans"`
}

type rawVLANs struct {
	IL3        *int `yaml:"il3"`
	General    *int `yaml:"general"`
	Guest      *int `yaml:"guest"`
	Onboarding *int `yaml:"onboarding"`
}

type rawTLS struct {
	Certificate    string `yaml:"certificate"`
	Key            string `yaml:"key"`
	MinVersion     string `yaml:"min_version"`
	MaxVersion     string `yaml:"max_version"`
	FragmentSize   *int   `yaml:"fragment_size"`
	MaxMessageSize *int   `yaml:"max_message_size"`
	// CurvePreferences are key exchange names (eaptls.ParseCurvePreferences).
	CurvePreferences []string `yaml:"curve_preferences"`
}

type rawAnchor struct {
	Name            string   `yaml:"name"`
	IL3             bool     `yaml:"il3"`
	CAFiles         []string `yaml:"ca_files"`
	CRLs            []string `yaml:"crls"`
	CRLRefresh      string   `yaml:"crl_refresh"`
	CRLMaxAge       string   `yaml:"crl_max_age"`
	StaleFailClosed bool     `yaml:"stale_fail_closed"`
	RequireCRL      bool     `yaml:"require_crl"`
	OIDs            *rawOIDs `yaml:"oids"`
}

type rawOIDs struct {
	CouncilManaged []string `yaml:"council_managed"`
	Personal       []string `yaml:"personal"`
	Staff          []string `yaml:"staff"`
	Member         []string `yaml:"member"`
	Contractor     []string `yaml:"contractor"`
	Visitor        []string `yaml:"visitor"`
	ClearanceIL3   []string `yaml:"clearance_il3"`
}

type rawPolicy struct {
	MaxRevocationAge string    `yaml:"max_revocation_age"`
	Rules            []rawRule `yaml:"rules"`
}

type rawRule struct {
	Name           string   `yaml:"name"`
	Match          rawMatch `yaml:"match"`
	Segment        string   `yaml:"segment"`
	Fallback       string   `yaml:"fallback"`
	SessionTimeout string   `yaml:"session_timeout"`
	RejectReason   string   `yaml:"reject_reason"`
}

type rawMatch struct {
	Ownership    []string `yaml:"ownership"`
	Roles        []string `yaml:"roles"`
	ClearanceIL3 *bool    `yaml:"clearance_il3"`
	Anchors      []string `yaml:"anchors"`
	PolicyOIDs   []string `yaml:"policy_oids"`
	EmailDomains []string `yaml:"email_domains"`
	Sites        []string `yaml:"sites"`
	SSIDs        []string `yaml:"ssids"`
}

type rawLimits struct {
	MaxConversations    *int   `yaml:"max_conversations"`
	ConversationTimeout string `yaml:"conversation_timeout"`
	DuplicateWindow     string `yaml:"duplicate_window"`
}

type rawLog struct {
	Level     string `yaml:"level"`
	AccessLog string `yaml:"access_log"`

	AccessLogMaxSize  string `yaml:"access_log_max_size"`
	AccessLogMaxAge   string `yaml:"access_log_max_age"`
	OnWriteError      string `yaml:"on_write_error"`
	AuditSealEvery    *int   `yaml:"audit_seal_every"`
	AuditSealInterval string `yaml:"audit_seal_interval"`
	AccessLogStream   string `yaml:"access_log_stream"`
}
