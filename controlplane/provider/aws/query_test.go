package aws

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestReadError(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		location string
		body     string
		// wantCode is EC2's error code; "" for an answer without one.
		wantCode string
		wantText string
	}{
		{"throttled", http.StatusServiceUnavailable, "",
			`<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>4c7b5b1f-0000-4000-8000-000000000001</RequestID></Response>`,
			"RequestLimitExceeded", "RequestLimitExceeded: Request limit exceeded. (HTTP 503, request 4c7b5b1f-0000-4000-8000-000000000001)"},
		{"first-of-two", http.StatusBadRequest, "",
			`<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>bad</Message></Error><Error><Code>Other</Code><Message>x</Message></Error></Errors><RequestID>r</RequestID></Response>`,
			"InvalidParameterValue", "InvalidParameterValue: bad (HTTP 400, request r)"},
		{"escaped-message", http.StatusForbidden, "",
			`<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized &amp; so on</Message></Error></Errors><RequestID>r</RequestID></Response>`,
			"UnauthorizedOperation", "You are not authorized & so on"},
		{"proxy-page", http.StatusBadGateway, "", `<html><body>Bad Gateway</body></html>`,
			"", "EC2's endpoint answered HTTP 502 Bad Gateway without an EC2 error"},
		{"empty-body", http.StatusServiceUnavailable, "", ``,
			"", "HTTP 503 Service Unavailable"},
		{"no-code", http.StatusBadRequest, "", `<Response><Errors><Error><Message>?</Message></Error></Errors></Response>`,
			"", "HTTP 400 Bad Request"},
		{"redirect", http.StatusFound, "http://127.0.0.1:1/", ``,
			"", `the redirect to "http://127.0.0.1:1/" is not followed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(tt.body))}
			if tt.location != "" {
				resp.Header.Set("Location", tt.location)
			}
			err := readError(resp)
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q, want it to say %q", err, tt.wantText)
			}
			switch ae, ok := apiError(err); {
			case ok && ae.ErrorCode() != tt.wantCode:
				t.Errorf("code %q, want %q", ae.ErrorCode(), tt.wantCode)
			case !ok && tt.wantCode != "":
				t.Errorf("%v is not an EC2 error; want code %s", err, tt.wantCode)
			}
			// The SDK's retryer reads the status through this interface.
			var st interface{ HTTPStatusCode() int }
			if !errors.As(err, &st) || st.HTTPStatusCode() != tt.status {
				t.Errorf("error %v does not carry its HTTP status %d", err, tt.status)
			}
		})
	}
}

func TestQueryEncode(t *testing.T) {
	q := query{}
	q.list("InstanceId", []string{"i-1", "i-2"})
	q.filters([]filter{{"tag:navarch-cluster", []string{"a b"}}, {"instance-state-name", []string{"pending", "running"}}})
	q.set("UserData", "I2Nsb3VkLWNvbmZpZw==")
	want := url.Values{
		"Action": {"DescribeInstances"}, "Version": {"2016-11-15"},
		"InstanceId.1": {"i-1"}, "InstanceId.2": {"i-2"},
		"Filter.1.Name": {"tag:navarch-cluster"}, "Filter.1.Value.1": {"a b"},
		"Filter.2.Name": {"instance-state-name"}, "Filter.2.Value.1": {"pending"}, "Filter.2.Value.2": {"running"},
		"UserData": {"I2Nsb3VkLWNvbmZpZw=="},
	}
	body := q.encode("DescribeInstances")
	if !strings.HasPrefix(body, "Action=DescribeInstances&Version=2016-11-15&") {
		t.Errorf("body %q does not begin with the action and version", body)
	}
	got, err := url.ParseQuery(body)
	if err != nil {
		t.Fatal(err)
	}
	if got.Encode() != want.Encode() {
		t.Errorf("body\n%s\nwant\n%s", got.Encode(), want.Encode())
	}
	if (query{}).encode("DescribeImages") != "Action=DescribeImages&Version=2016-11-15" {
		t.Errorf("empty query = %q", (query{}).encode("DescribeImages"))
	}
}
