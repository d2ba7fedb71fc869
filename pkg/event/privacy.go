package event

// Consent is the payload of ConsentRecorded: the subject's choice for every
// purpose, under the notice version they were shown.
type Consent struct {
	Analytics     bool   `json:"analytics"`
	NetworkData   bool   `json:"network_data"`
	AI            bool   `json:"ai"`
	NoticeVersion string `json:"notice_version"`
}
