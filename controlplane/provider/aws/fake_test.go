package aws_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// fakeEC2 is an EC2 endpoint on loopback that speaks EC2's query API:
// form-encoded requests (Action=…&Version=2016-11-15) signed with SigV4,
// XML answers in EC2's namespace, and EC2's error document with the HTTP
// status EC2 gives each error. It keeps instances, client
// tokens and spot requests, and can be told to run out of capacity,
// throttle, or refuse the credentials.
type fakeEC2 struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	subnets   map[string]string // subnet id → zone
	images    map[string]string // AMI → root device name
	instances []*fakeInstance
	next      int
	// full answers a launch in the subnet with this error code.
	full map[string]string
	// capacity is how many more instances may start; -1 is no limit.
	capacity int
	// throttle answers this many more calls of the action with
	// RequestLimitExceeded.
	throttle map[string]int
	// deny answers every call with this error code.
	deny string
	// denyAction answers calls of one action with UnauthorizedOperation.
	denyAction string
	// pageSize caps the instances in one DescribeInstances page.
	pageSize int
	// nextToken, when set, is the token a DescribeInstances page answers,
	// given the token it was asked for and its end among total instances
	// ("" ends the listing), as a faulty endpoint might choose it.
	nextToken func(token string, end, total int) string
	// redirect answers every call with this HTTP status and a Location
	// at redirectTo, the same path; 0 never.
	redirect   int
	redirectTo string
	// hang answers no call until the caller gives up.
	hang bool
	// hidden are instances EC2 does not know yet: its answers are
	// eventually consistent, and DescribeInstances and TerminateInstances
	// may not know an instance for a while after RunInstances started it.
	hidden map[string]bool
	// sessionToken is the X-Amz-Security-Token every request must carry
	// (and sign); "" means none may.
	sessionToken string
	// foreign answers every call with HTTP 200 and this body, as a proxy
	// or another service at the endpoint might; "" never.
	foreign  string
	tokens   map[string]tokenUse
	requests []fakeRequest
}

type fakeRequest struct {
	action string
	form   url.Values
}

// tokenUse is what EC2 remembers of a client token: the request's
// parameters and its outcome, a failure included.
type tokenUse struct {
	params   string
	instance *fakeInstance
	code     string
}

type fakeInstance struct {
	id, subnet, zone, itype, ami, state, token, userData string
	tags, volumeTags                                     map[string]string
	spot                                                 bool
	spotCode, spotMessage                                string
	spotUpdated                                          time.Time
	stateReason                                          string
	form                                                 url.Values
}

const (
	ec2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"
	accessKey    = "AKIDNAVARCHTEST"
	secretKey    = "secret"
)

func newFakeEC2(t *testing.T) *fakeEC2 {
	f := &fakeEC2{
		t: t,
		subnets: map[string]string{
			"subnet-a": "us-east-1a", "subnet-b": "us-east-1b", "subnet-c": "us-east-1c",
		},
		images:   map[string]string{"ami-gpu": "/dev/sda1"},
		full:     map[string]string{},
		capacity: -1,
		throttle: map[string]int{},
		pageSize: 1000,
		tokens:   map[string]tokenUse{},
		hidden:   map[string]bool{},
	}
	f.srv = httptest.NewTLSServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

// errorStatus is the HTTP status EC2 answers each error code with.
var errorStatus = map[string]int{
	"InsufficientInstanceCapacity": http.StatusInternalServerError,
	"SignatureDoesNotMatch":        http.StatusForbidden,
	"IncompleteSignature":          http.StatusBadRequest,
	"InsufficientCapacity":         http.StatusInternalServerError,
	"RequestLimitExceeded":         http.StatusServiceUnavailable,
	"AuthFailure":                  http.StatusUnauthorized,
	"UnauthorizedOperation":        http.StatusForbidden,
}

func (f *fakeEC2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		http.Error(w, "EC2's query API takes form-encoded POSTs", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	hang, redirect, to := f.hang, f.redirect, f.redirectTo
	f.mu.Unlock()
	switch {
	case hang:
		// Once the request is read, the server sees the caller hang up,
		// and then answers nothing at all: a handler that returned would
		// send an empty 200.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
		panic(http.ErrAbortHandler)
	case redirect != 0:
		w.Header().Set("Location", to+r.URL.Path)
		w.WriteHeader(redirect)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		f.fail(w, "MalformedQueryString", err.Error())
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		f.fail(w, "MalformedQueryString", err.Error())
		return
	}
	action := form.Get("Action")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, fakeRequest{action, form})
	if f.foreign != "" {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, f.foreign)
		return
	}
	if v := form.Get("Version"); v != "2016-11-15" {
		f.fail(w, "InvalidParameterValue", "unsupported API version "+v)
		return
	}
	if code, msg := checkSignature(r, body, f.sessionToken); code != "" {
		f.fail(w, code, msg)
		return
	}
	if code, msg := checkParams(action, form); code != "" {
		f.fail(w, code, msg)
		return
	}
	if f.deny != "" {
		f.fail(w, f.deny, "AWS was not able to validate the provided access credentials")
		return
	}
	if action == f.denyAction {
		f.fail(w, "UnauthorizedOperation", "You are not authorized to perform this operation. Encoded authorization failure message: abc")
		return
	}
	if f.throttle[action] > 0 {
		f.throttle[action]--
		f.fail(w, "RequestLimitExceeded", "Request limit exceeded.")
		return
	}
	switch action {
	case "RunInstances":
		f.runInstances(w, form)
	case "DescribeInstances":
		f.describeInstances(w, form)
	case "TerminateInstances":
		f.terminateInstances(w, form)
	case "DescribeSpotInstanceRequests":
		f.describeSpotRequests(w, form)
	case "DescribeImages":
		f.describeImages(w, form)
	case "DescribeInstanceTypes":
		f.describeInstanceTypes(w, form)
	default:
		f.fail(w, "InvalidAction", "The action "+action+" is not valid for this web service.")
	}
}

// checkSignature checks the request's SigV4 signature as EC2 does: an
// Authorization header of the AWS4-HMAC-SHA256 scheme by the test's
// access key, scoped to us-east-1 and ec2, and a signature of the headers
// it names, the X-Amz-Date among them, and of the body's SHA-256, made
// with the test's secret; session credentials' token in the
// X-Amz-Security-Token header, which is signed too. It returns EC2's
// error code, or "".
func checkSignature(r *http.Request, body []byte, sessionToken string) (code, msg string) {
	auth := r.Header.Get("Authorization")
	scheme, fields, _ := strings.Cut(auth, " ")
	if scheme != "AWS4-HMAC-SHA256" {
		return "IncompleteSignature", "Authorization header requires the AWS4-HMAC-SHA256 scheme"
	}
	parts := map[string]string{}
	for _, p := range strings.Split(fields, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		parts[k] = v
	}
	signedAt, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	signed := strings.Split(parts["SignedHeaders"], ";")
	switch {
	case err != nil || !slices.Contains(signed, "x-amz-date"):
		return "IncompleteSignature", "the request must carry a signed X-Amz-Date"
	case !strings.HasPrefix(parts["Credential"], accessKey+"/") || !strings.HasSuffix(parts["Credential"], "/us-east-1/ec2/aws4_request"):
		return "AuthFailure", "AWS was not able to validate the provided access credentials"
	case r.Header.Get("X-Amz-Security-Token") != sessionToken:
		return "AuthFailure", "AWS was not able to validate the provided access credentials"
	case sessionToken != "" && !slices.Contains(signed, "x-amz-security-token"):
		return "IncompleteSignature", "the session token must be signed"
	}
	again, err := http.NewRequest(r.Method, "https://"+r.Host+r.URL.RequestURI(), nil)
	if err != nil {
		return "IncompleteSignature", err.Error()
	}
	for _, h := range signed {
		if h != "host" && h != "content-length" {
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	again.ContentLength = r.ContentLength
	sum := sha256.Sum256(body)
	creds := awssdk.Credentials{AccessKeyID: accessKey, SecretAccessKey: secretKey, SessionToken: sessionToken}
	if err := v4.NewSigner().SignHTTP(r.Context(), creds, again, hex.EncodeToString(sum[:]), "ec2", "us-east-1", signedAt); err != nil {
		return "IncompleteSignature", err.Error()
	}
	if again.Header.Get("Authorization") != auth {
		return "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided."
	}
	return "", ""
}

func (f *fakeEC2) fail(w http.ResponseWriter, code, msg string) {
	st, ok := errorStatus[code]
	if !ok {
		st = http.StatusBadRequest
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(st)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`,
		esc(code), esc(msg), "4c7b5b1f-0000-4000-8000-000000000001")
}

func (f *fakeEC2) answer(w http.ResponseWriter, action, body string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<%sResponse xmlns="%s"><requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>%s</%sResponse>`,
		action, ec2Namespace, body, action)
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// list reads a query list, prefix.1, prefix.2, … up to the first gap.
func list(form url.Values, prefix string) []string {
	var out []string
	for i := 1; form.Has(prefix + "." + strconv.Itoa(i)); i++ {
		out = append(out, form.Get(prefix+"."+strconv.Itoa(i)))
	}
	return out
}

// filters reads Filter.N.Name and Filter.N.Value.M.
func filters(form url.Values) map[string][]string {
	out := map[string][]string{}
	for i := 1; form.Has("Filter." + strconv.Itoa(i) + ".Name"); i++ {
		p := "Filter." + strconv.Itoa(i)
		out[form.Get(p+".Name")] = list(form, p+".Value")
	}
	return out
}

// tagSpecs reads TagSpecification.N.ResourceType and its Tag.M.Key/Value.
func tagSpecs(form url.Values) map[string]map[string]string {
	out := map[string]map[string]string{}
	for i := 1; form.Has("TagSpecification." + strconv.Itoa(i) + ".ResourceType"); i++ {
		p := "TagSpecification." + strconv.Itoa(i)
		tags := map[string]string{}
		for j := 1; form.Has(p + ".Tag." + strconv.Itoa(j) + ".Key"); j++ {
			tags[form.Get(p+".Tag."+strconv.Itoa(j)+".Key")] = form.Get(p + ".Tag." + strconv.Itoa(j) + ".Value")
		}
		out[form.Get(p+".ResourceType")] = tags
	}
	return out
}

func (f *fakeEC2) runInstances(w http.ResponseWriter, form url.Values) {
	if form.Get("MinCount") != "1" || form.Get("MaxCount") != "1" {
		f.fail(w, "InvalidParameterValue", "the test expects one instance per call")
		return
	}
	token := form.Get("ClientToken")
	params := paramsOf(form)
	if use, ok := f.tokens[token]; ok && token != "" {
		switch {
		case use.params != params:
			f.fail(w, "IdempotentParameterMismatch", "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
		case use.code != "":
			f.fail(w, use.code, "We currently do not have sufficient capacity in the Availability Zone you requested.")
		default:
			f.answer(w, "RunInstances", reservationXML(use.instance))
		}
		return
	}
	subnet := form.Get("SubnetId")
	zone, ok := f.subnets[subnet]
	switch {
	case !ok:
		f.fail(w, "InvalidSubnetID.NotFound", "The subnet ID '"+subnet+"' does not exist")
		return
	case f.images[form.Get("ImageId")] == "":
		f.fail(w, "InvalidAMIID.NotFound", "The image id '["+form.Get("ImageId")+"]' does not exist")
		return
	}
	code := f.full[subnet]
	if code == "" && f.capacity == 0 {
		code = "InsufficientInstanceCapacity"
	}
	if code != "" {
		f.tokens[token] = tokenUse{params: params, code: code}
		f.fail(w, code, fmt.Sprintf("We currently do not have sufficient %s capacity in the Availability Zone you requested (%s).", form.Get("InstanceType"), zone))
		return
	}
	if f.capacity > 0 {
		f.capacity--
	}
	f.next++
	specs := tagSpecs(form)
	in := &fakeInstance{
		id: fmt.Sprintf("i-%017d", f.next), subnet: subnet, zone: zone, itype: form.Get("InstanceType"),
		ami: form.Get("ImageId"), state: "pending", token: token, userData: form.Get("UserData"),
		tags: specs["instance"], volumeTags: specs["volume"], form: form,
		spot: form.Get("InstanceMarketOptions.MarketType") == "spot", spotCode: "fulfilled",
	}
	f.instances = append(f.instances, in)
	f.tokens[token] = tokenUse{params: params, instance: in}
	f.answer(w, "RunInstances", reservationXML(in))
}

// paramsOf is a request's parameters as EC2 compares them for a client
// token.
func paramsOf(form url.Values) string {
	c := url.Values{}
	for k, v := range form {
		if k != "Action" && k != "Version" {
			c[k] = v
		}
	}
	return c.Encode()
}

var stateCodes = map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}

func instanceXML(in *fakeInstance) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<item><instanceId>%s</instanceId><imageId>%s</imageId>", in.id, esc(in.ami))
	fmt.Fprintf(&b, "<instanceState><code>%d</code><name>%s</name></instanceState>", stateCodes[in.state], in.state)
	fmt.Fprintf(&b, "<instanceType>%s</instanceType><placement><availabilityZone>%s</availabilityZone><tenancy>default</tenancy></placement>", esc(in.itype), in.zone)
	fmt.Fprintf(&b, "<subnetId>%s</subnetId><clientToken>%s</clientToken>", in.subnet, esc(in.token))
	if in.spot {
		fmt.Fprintf(&b, "<instanceLifecycle>spot</instanceLifecycle><spotInstanceRequestId>sir-%s</spotInstanceRequestId>", in.id[2:])
	}
	if in.stateReason != "" {
		// EC2's message repeats the code: "Client.UserInitiatedShutdown: …".
		code, _, _ := strings.Cut(in.stateReason, ":")
		fmt.Fprintf(&b, "<stateReason><code>%s</code><message>%s</message></stateReason>", esc(code), esc(in.stateReason))
	}
	b.WriteString("<tagSet>")
	for _, k := range sortedKeys(in.tags) {
		fmt.Fprintf(&b, "<item><key>%s</key><value>%s</value></item>", esc(k), esc(in.tags[k]))
	}
	b.WriteString("</tagSet></item>")
	return b.String()
}

func reservationXML(in *fakeInstance) string {
	return fmt.Sprintf("<reservationId>r-%s</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet>%s</instancesSet>",
		in.id[2:], instanceXML(in))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// matches applies the filters the provider uses; any other is an error,
// so a filter the fake does not know cannot pass unnoticed.
func (in *fakeInstance) matches(filters map[string][]string) (bool, error) {
	for name, values := range filters {
		var v string
		switch {
		case strings.HasPrefix(name, "tag:"):
			var ok bool
			if v, ok = in.tags[strings.TrimPrefix(name, "tag:")]; !ok {
				return false, nil
			}
		case name == "instance-state-name":
			v = in.state
		case name == "instance-id":
			v = in.id
		default:
			return false, fmt.Errorf("the filter %q is not known to the test", name)
		}
		if !slices.Contains(values, v) {
			return false, nil
		}
	}
	return true, nil
}

func (f *fakeEC2) describeInstances(w http.ResponseWriter, form url.Values) {
	// Instance ids EC2 does not know are an error, as at EC2.
	ids := list(form, "InstanceId")
	for _, id := range ids {
		if f.instance(id) == nil || f.hidden[id] {
			f.fail(w, "InvalidInstanceID.NotFound", "The instance ID '"+id+"' does not exist")
			return
		}
	}
	var picked []*fakeInstance
	for _, in := range f.instances {
		if f.hidden[in.id] || len(ids) > 0 && !slices.Contains(ids, in.id) {
			continue
		}
		ok, err := in.matches(filters(form))
		if err != nil {
			f.fail(w, "InvalidParameterValue", err.Error())
			return
		}
		if ok {
			picked = append(picked, in)
		}
	}
	start, _ := strconv.Atoi(form.Get("NextToken"))
	start = min(start, len(picked))
	size := f.pageSize
	if m, err := strconv.Atoi(form.Get("MaxResults")); err == nil && m < size {
		size = m
	}
	end := min(start+size, len(picked))
	var b strings.Builder
	b.WriteString("<reservationSet>")
	for _, in := range picked[start:end] {
		b.WriteString("<item>" + reservationXML(in) + "</item>")
	}
	b.WriteString("</reservationSet>")
	next := ""
	if end < len(picked) {
		next = strconv.Itoa(end)
	}
	if f.nextToken != nil {
		next = f.nextToken(form.Get("NextToken"), end, len(picked))
	}
	if next != "" {
		fmt.Fprintf(&b, "<nextToken>%s</nextToken>", next)
	}
	f.answer(w, "DescribeInstances", b.String())
}

func (f *fakeEC2) terminateInstances(w http.ResponseWriter, form url.Values) {
	ids := list(form, "InstanceId")
	var picked []*fakeInstance
	for _, id := range ids {
		in := f.instance(id)
		if in == nil || f.hidden[id] {
			f.fail(w, "InvalidInstanceID.NotFound", "The instance ID '"+id+"' does not exist")
			return
		}
		picked = append(picked, in)
	}
	var b strings.Builder
	b.WriteString("<instancesSet>")
	for _, in := range picked {
		prev := in.state
		if in.state != "terminated" {
			in.state = "shutting-down"
		}
		fmt.Fprintf(&b, "<item><instanceId>%s</instanceId><currentState><code>%d</code><name>%s</name></currentState><previousState><code>%d</code><name>%s</name></previousState></item>",
			in.id, stateCodes[in.state], in.state, stateCodes[prev], prev)
	}
	b.WriteString("</instancesSet>")
	f.answer(w, "TerminateInstances", b.String())
}

func (f *fakeEC2) describeSpotRequests(w http.ResponseWriter, form url.Values) {
	want := filters(form)["instance-id"]
	var b strings.Builder
	b.WriteString("<spotInstanceRequestSet>")
	for _, in := range f.instances {
		if !in.spot || !slices.Contains(want, in.id) {
			continue
		}
		fmt.Fprintf(&b, "<item><spotInstanceRequestId>sir-%s</spotInstanceRequestId><instanceId>%s</instanceId><state>active</state><type>one-time</type>", in.id[2:], in.id)
		fmt.Fprintf(&b, "<status><code>%s</code><message>%s</message>", in.spotCode, esc(in.spotMessage))
		if !in.spotUpdated.IsZero() {
			fmt.Fprintf(&b, "<updateTime>%s</updateTime>", in.spotUpdated.UTC().Format("2006-01-02T15:04:05.000Z"))
		}
		fmt.Fprintf(&b, "</status><launchedAvailabilityZone>%s</launchedAvailabilityZone></item>", in.zone)
	}
	b.WriteString("</spotInstanceRequestSet>")
	f.answer(w, "DescribeSpotInstanceRequests", b.String())
}

func (f *fakeEC2) describeImages(w http.ResponseWriter, form url.Values) {
	var b strings.Builder
	b.WriteString("<imagesSet>")
	for _, id := range list(form, "ImageId") {
		dev, ok := f.images[id]
		if !ok {
			f.fail(w, "InvalidAMIID.NotFound", "The image id '["+id+"]' does not exist")
			return
		}
		fmt.Fprintf(&b, "<item><imageId>%s</imageId><rootDeviceName>%s</rootDeviceName><rootDeviceType>ebs</rootDeviceType></item>", esc(id), esc(dev))
	}
	b.WriteString("</imagesSet>")
	f.answer(w, "DescribeImages", b.String())
}

// gpuTypes are the instance types the fake knows, with their GPUs.
var gpuTypes = map[string]int{"p5.48xlarge": 8, "p4d.24xlarge": 8, "g6.xlarge": 1}

func (f *fakeEC2) describeInstanceTypes(w http.ResponseWriter, form url.Values) {
	var b strings.Builder
	b.WriteString("<instanceTypeSet>")
	for _, it := range list(form, "InstanceType") {
		n, ok := gpuTypes[it]
		if !ok {
			f.fail(w, "InvalidInstanceType", "The following supplied instance types do not exist: ["+it+"]")
			return
		}
		fmt.Fprintf(&b, "<item><instanceType>%s</instanceType><gpuInfo><gpus><item><name>H100</name><manufacturer>NVIDIA</manufacturer><count>%d</count></item></gpus></gpuInfo></item>", it, n)
	}
	b.WriteString("</instanceTypeSet>")
	f.answer(w, "DescribeInstanceTypes", b.String())
}

func (f *fakeEC2) instance(id string) *fakeInstance {
	for _, in := range f.instances {
		if in.id == id {
			return in
		}
	}
	return nil
}

// calls counts the requests of an action.
func (f *fakeEC2) calls(action string) []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []url.Values
	for _, r := range f.requests {
		if r.action == action {
			out = append(out, r.form)
		}
	}
	return out
}

// set changes the fake's state under its lock.
func (f *fakeEC2) set(fn func(f *fakeEC2)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}
