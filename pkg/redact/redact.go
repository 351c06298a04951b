// Package redact hides passwords in connection strings before they are
// printed or logged.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// passwordParam finds a password given as a parameter: password=… of a
// key=value connection string or of a URL's query.
var passwordParam = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)`)

// DSN returns dsn, a URL or a key=value connection string, with mask in
// place of its passwords: its userinfo's, and one given as a parameter. A
// URL that does not parse is mask as a whole.
func DSN(dsn, mask string) string {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return mask
		}
		if _, has := u.User.Password(); has {
			// A placeholder url.URL does not escape, replaced afterwards.
			u.User = url.UserPassword(u.User.Username(), "xredactedx")
			dsn = strings.Replace(u.String(), "xredactedx", mask, 1)
		}
	}
	return passwordParam.ReplaceAllString(dsn, "${1}"+mask)
}
