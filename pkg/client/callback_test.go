package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/amtsbote/amtsbote/pkg/problem"
)

// The vector's MAC was computed with
// printf '%s' "$timestamp.$body" | openssl dgst -sha512 -hmac "$secret".
const (
	callbackSecret    = "insecure_unsafe_qHScgrg_kP-R31jHUwp3GkVkGJolvBchz65b74Lzue0"
	callbackBody      = `{"type":"https://schema.fitko.de/fit-connect/submission-api/callbacks/new-submissions","submissionIds":["f39ab143-d91a-474a-b69f-b00f1a1873c2"]}`
	callbackTimestamp = "1700000000"
	callbackMACHex    = "817d4c9703e929002d182f86b54b91286dd6053410506a887f570e9fe165d0654f1ab88d2864e02cf1f7b46b6acc01174dfc4c5356f8bf9aa1c75329f706d08b"
)

var callbackSent = time.Unix(1700000000, 0)

func callbackHeader(timestamp, auth string) http.Header {
	h := http.Header{}
	if timestamp != "" {
		h.Set(CallbackTimestampHeader, timestamp)
	}
	if auth != "" {
		h.Set(CallbackAuthenticationHeader, auth)
	}
	return h
}

func TestSignCallback(t *testing.T) {
	ts, sig := SignCallback(callbackSecret, []byte(callbackBody), callbackSent)
	if ts != callbackTimestamp || sig != callbackMACHex {
		t.Fatalf("SignCallback = %s, %s; want %s, %s", ts, sig, callbackTimestamp, callbackMACHex)
	}
}

func TestVerifyCallback(t *testing.T) {
	body := []byte(callbackBody)
	sign := func(secret string, body []byte, at time.Time) http.Header {
		return callbackHeader(SignCallback(secret, body, at))
	}
	otherSecret := strings.Repeat("s", 32)
	twice := callbackHeader(callbackTimestamp, callbackMACHex)
	twice.Add(CallbackAuthenticationHeader, callbackMACHex)
	cases := []struct {
		name   string
		secret string
		header http.Header
		body   []byte
		now    time.Time
		want   error
	}{
		{"valid", callbackSecret, callbackHeader(callbackTimestamp, callbackMACHex), body, callbackSent, nil},
		{"valid upper-case hex", callbackSecret, callbackHeader(callbackTimestamp, strings.ToUpper(callbackMACHex)), body, callbackSent, nil},
		{"valid 5 minutes old", callbackSecret, callbackHeader(callbackTimestamp, callbackMACHex), body, callbackSent.Add(CallbackMaxAge), nil},
		{"valid 5 minutes ahead", callbackSecret, callbackHeader(callbackTimestamp, callbackMACHex), body, callbackSent.Add(-CallbackMaxAge), nil},
		{"valid empty body", callbackSecret, sign(callbackSecret, nil, callbackSent), nil, callbackSent, nil},
		{"expired", callbackSecret, callbackHeader(callbackTimestamp, callbackMACHex), body, callbackSent.Add(CallbackMaxAge + time.Second), ErrCallbackExpired},
		{"future", callbackSecret, callbackHeader(callbackTimestamp, callbackMACHex), body, callbackSent.Add(-CallbackMaxAge - time.Second), ErrCallbackFuture},
		{"forged", callbackSecret, callbackHeader(callbackTimestamp, strings.Repeat("ab", 64)), body, callbackSent, ErrCallbackSignature},
		{"forged and expired", callbackSecret, callbackHeader(callbackTimestamp, strings.Repeat("ab", 64)), body, callbackSent.Add(time.Hour), ErrCallbackSignature},
		{"tampered body", callbackSecret, callbackHeader(callbackTimestamp, callbackMACHex), bytes.Replace(body, []byte("f39a"), []byte("f39b"), 1), callbackSent, ErrCallbackSignature},
		{"trailing newline", callbackSecret, callbackHeader(callbackTimestamp, callbackMACHex), append(body, '\n'), callbackSent, ErrCallbackSignature},
		{"moved timestamp", callbackSecret, callbackHeader("1700000001", callbackMACHex), body, callbackSent, ErrCallbackSignature},
		{"leading zero", callbackSecret, callbackHeader("01700000000", callbackMACHex), body, callbackSent, ErrCallbackTimestamp},
		{"wrong secret", otherSecret, callbackHeader(callbackTimestamp, callbackMACHex), body, callbackSent, ErrCallbackSignature},
		{"signed with another secret", callbackSecret, sign(otherSecret, body, callbackSent), body, callbackSent, ErrCallbackSignature},
		{"short signature", callbackSecret, callbackHeader(callbackTimestamp, callbackMACHex[:126]), body, callbackSent, ErrCallbackSignature},
		{"non-hex signature", callbackSecret, callbackHeader(callbackTimestamp, "zz"+callbackMACHex[2:]), body, callbackSent, ErrCallbackSignature},
		{"base64 signature", callbackSecret, callbackHeader(callbackTimestamp, "gX1MlwPpKQAtGC+GtUuRKG3WBTQQUGqIf1cOn+Fl0GVPGriNKGTgLPH3tGtqzAEXTfxMU1b4v5qhx1Mp9wbQiw=="), body, callbackSent, ErrCallbackSignature},
		{"missing timestamp", callbackSecret, callbackHeader("", callbackMACHex), body, callbackSent, ErrCallbackHeader},
		{"missing authentication", callbackSecret, callbackHeader(callbackTimestamp, ""), body, callbackSent, ErrCallbackHeader},
		{"no headers", callbackSecret, http.Header{}, body, callbackSent, ErrCallbackHeader},
		{"empty timestamp", callbackSecret, http.Header{CallbackTimestampHeader: {""}, CallbackAuthenticationHeader: {callbackMACHex}}, body, callbackSent, ErrCallbackHeader},
		{"authentication twice", callbackSecret, twice, body, callbackSent, ErrCallbackHeader},
		{"negative timestamp", callbackSecret, callbackHeader("-1700000000", callbackMACHex), body, callbackSent, ErrCallbackTimestamp},
		{"signed timestamp", callbackSecret, callbackHeader("+1700000000", callbackMACHex), body, callbackSent, ErrCallbackTimestamp},
		{"milliseconds", callbackSecret, callbackHeader("1700000000000", callbackMACHex), body, callbackSent, ErrCallbackTimestamp},
		{"exponent", callbackSecret, callbackHeader("1.7e9", callbackMACHex), body, callbackSent, ErrCallbackTimestamp},
		{"date", callbackSecret, callbackHeader("Tue, 14 Nov 2023 22:13:20 GMT", callbackMACHex), body, callbackSent, ErrCallbackTimestamp},
		{"short secret", strings.Repeat("s", 31), callbackHeader(callbackTimestamp, callbackMACHex), body, callbackSent, ErrCallbackSecret},
		{"long secret", strings.Repeat("s", 513), callbackHeader(callbackTimestamp, callbackMACHex), body, callbackSent, ErrCallbackSecret},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyCallback(tc.secret, tc.header, tc.body, tc.now)
			if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
				t.Fatalf("VerifyCallback: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestVerifyCallbackReplay shows the chosen replay rule: a callback
// replayed within CallbackMaxAge verifies again, a later replay does not.
func TestVerifyCallbackReplay(t *testing.T) {
	body := []byte(callbackBody)
	h := callbackHeader(SignCallback(callbackSecret, body, callbackSent))
	for _, after := range []time.Duration{0, time.Second, 4 * time.Minute} {
		if err := VerifyCallback(callbackSecret, h, body, callbackSent.Add(after)); err != nil {
			t.Fatalf("replay after %s: %v", after, err)
		}
	}
	if err := VerifyCallback(callbackSecret, h, body, callbackSent.Add(6*time.Minute)); !errors.Is(err, ErrCallbackExpired) {
		t.Fatalf("replay after 6m: %v, want ErrCallbackExpired", err)
	}
}

func TestCallbackHandler(t *testing.T) {
	now := callbackSent
	var got [][]byte
	h, err := callbackHandler(callbackSecret, func() time.Time { return now }, func(w http.ResponseWriter, r *http.Request, body []byte) {
		got = append(got, body)
		w.WriteHeader(http.StatusNoContent)
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	post := func(method string, header http.Header, body []byte) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	readProblem := func(t *testing.T, resp *http.Response, status int, field string) {
		t.Helper()
		if resp.StatusCode != status || resp.Header.Get("Content-Type") != problem.ContentType {
			t.Fatalf("answer %d %s, want %d %s", resp.StatusCode, resp.Header.Get("Content-Type"), status, problem.ContentType)
		}
		var p problem.Problem
		raw, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatalf("problem %s: %v", raw, err)
		}
		if p.Status != status || p.Field != field || p.Detail == "" {
			t.Fatalf("problem %s, want status %d, field %q", raw, status, field)
		}
	}
	body := []byte(callbackBody)
	valid := callbackHeader(callbackTimestamp, callbackMACHex)

	t.Run("valid", func(t *testing.T) {
		if resp := post(http.MethodPost, valid, body); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("answer %d, want 204", resp.StatusCode)
		}
		if len(got) != 1 || !bytes.Equal(got[0], body) {
			t.Fatalf("next got %q", got)
		}
	})
	failures := []struct {
		name   string
		method string
		header http.Header
		body   []byte
		status int
		field  string
	}{
		{"forged", http.MethodPost, callbackHeader(callbackTimestamp, strings.Repeat("00", 64)), body, 401, CallbackAuthenticationHeader},
		{"tampered", http.MethodPost, valid, append([]byte(" "), body...), 401, CallbackAuthenticationHeader},
		{"no authentication", http.MethodPost, callbackHeader(callbackTimestamp, ""), body, 401, CallbackAuthenticationHeader},
		{"no timestamp", http.MethodPost, callbackHeader("", callbackMACHex), body, 401, CallbackTimestampHeader},
		{"bad timestamp", http.MethodPost, callbackHeader("soon", callbackMACHex), body, 401, CallbackTimestampHeader},
		{"get", http.MethodGet, valid, nil, 405, ""},
		{"too large", http.MethodPost, valid, bytes.Repeat([]byte("x"), MaxCallbackBody+1), 413, ""},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			before := len(got)
			readProblem(t, post(tc.method, tc.header, tc.body), tc.status, tc.field)
			if len(got) != before {
				t.Fatal("next was called")
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		now = callbackSent.Add(10 * time.Minute)
		defer func() { now = callbackSent }()
		readProblem(t, post(http.MethodPost, valid, body), 401, CallbackTimestampHeader)
	})

	t.Run("bad setup", func(t *testing.T) {
		if _, err := CallbackHandler("short", func(http.ResponseWriter, *http.Request, []byte) {}); !errors.Is(err, ErrCallbackSecret) {
			t.Errorf("short secret: %v", err)
		}
		if _, err := CallbackHandler(callbackSecret, nil); err == nil {
			t.Error("no next handler accepted")
		}
	})
}

// FuzzVerifyCallback feeds header values and bodies, which anyone who can
// reach a callback URL controls, to VerifyCallback. It must never panic,
// must say why it refuses with one of its sentinels, and must accept only
// what SignCallback would have signed.
func FuzzVerifyCallback(f *testing.F) {
	f.Add(callbackTimestamp, callbackMACHex, []byte(callbackBody))
	f.Add("1700000100", callbackMACHex, []byte(callbackBody))
	f.Add("", "", []byte{})
	f.Add("-1", "00", []byte("{}"))
	f.Add("99999999999999999999", strings.Repeat("f", 128), []byte("x"))
	sentinels := []error{ErrCallbackHeader, ErrCallbackTimestamp, ErrCallbackSignature, ErrCallbackExpired, ErrCallbackFuture}
	f.Fuzz(func(t *testing.T, timestamp, auth string, body []byte) {
		h := http.Header{}
		h.Set(CallbackTimestampHeader, timestamp)
		h.Set(CallbackAuthenticationHeader, auth)
		err := VerifyCallback(callbackSecret, h, body, callbackSent)
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v wraps no sentinel", err)
		}
		at, perr := parseTimestamp(timestamp)
		if perr != nil {
			t.Fatalf("accepted timestamp %q: %v", timestamp, perr)
		}
		if _, sig := SignCallback(callbackSecret, body, at); !strings.EqualFold(sig, auth) || strings.TrimLeft(timestamp, "0") != strings.TrimLeft(callbackTimestamp, "0") {
			t.Fatalf("accepted %q, %q for %q", timestamp, auth, body)
		}
	})
}
