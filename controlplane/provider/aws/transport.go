package aws

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// Bounds on every HTTP request to EC2.
const (
	// defaultRequestTimeout bounds one request, its answer read whole
	// included; a request that runs out of it is retried.
	defaultRequestTimeout = 60 * time.Second
	// maxResponseBytes bounds one answer: a DescribeInstances page of
	// 1000 instances is a few MiB of XML.
	maxResponseBytes = 32 << 20
)

// httpClient is the client requests are sent with: the transport of the
// given client, or else of the SDK's own (which carries AWS_CA_BUNDLE),
// bounded in time and in the size of an answer, and following no
// redirect. EC2 never redirects; a redirect followed would take the
// signed request, the join tokens in its user data, to wherever it
// points, over plain http too.
func httpClient(o Options, sdk awssdk.HTTPClient) *http.Client {
	var rt http.RoundTripper
	if o.HTTPClient != nil {
		rt = cmp.Or[http.RoundTripper](o.HTTPClient.Transport, http.DefaultTransport)
	} else if b, ok := sdk.(*awshttp.BuildableClient); ok {
		rt = b.GetTransport()
	} else {
		rt = awshttp.NewBuildableClient().GetTransport()
	}
	return &http.Client{
		Transport: cappedTransport{next: rt, max: maxResponseBytes},
		Timeout:   cmp.Or(o.RequestTimeout, defaultRequestTimeout),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// cappedTransport fails the reading of an answer longer than max bytes,
// so that an endpoint cannot have the provider decode without end.
type cappedTransport struct {
	next http.RoundTripper
	max  int64
}

func (t cappedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{ReadCloser: resp.Body, left: t.max, max: t.max}
	return resp, nil
}

// cappedBody reads up to max bytes of an answer, then fails.
type cappedBody struct {
	io.ReadCloser
	left, max int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.tooLarge()
	}
	// One byte past the limit tells an answer of exactly max bytes from
	// a longer one.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	if int64(n) > b.left {
		n, b.left = int(b.left), -1
		return n, b.tooLarge()
	}
	b.left -= int64(n)
	return n, err
}

func (b *cappedBody) tooLarge() error {
	return fmt.Errorf("EC2's answer is longer than %d bytes; not read further", b.max)
}
