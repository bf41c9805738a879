package aws

import (
	"time"
)

// The answers of the six EC2 actions the provider calls, as EC2's query
// API writes them (namespace http://ec2.amazonaws.com/doc/2016-11-15/):
// lists are elements named …Set holding one <item> per member. Only the
// elements the provider reads are named; encoding/xml skips the rest, and
// matches the names in any namespace.

// ec2Instance is an instance as DescribeInstances and RunInstances
// describe it.
type ec2Instance struct {
	InstanceID        string   `xml:"instanceId"`
	State             string   `xml:"instanceState>name"`
	AvailabilityZone  string   `xml:"placement>availabilityZone"`
	InstanceLifecycle string   `xml:"instanceLifecycle"`
	StateReason       string   `xml:"stateReason>message"`
	Tags              []ec2Tag `xml:"tagSet>item"`
}

type ec2Tag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

// tag is the value of the tag named key, "" where the instance has none.
func (in ec2Instance) tag(key string) string {
	for _, t := range in.Tags {
		if t.Key == key {
			return t.Value
		}
	}
	return ""
}

// runInstancesResponse is RunInstances' answer: one reservation.
type runInstancesResponse struct {
	Instances []ec2Instance `xml:"instancesSet>item"`
}

// describeInstancesResponse is one page of DescribeInstances.
type describeInstancesResponse struct {
	Reservations []struct {
		Instances []ec2Instance `xml:"instancesSet>item"`
	} `xml:"reservationSet>item"`
	NextToken string `xml:"nextToken"`
}

// instances are the page's instances, of every reservation.
func (r *describeInstancesResponse) instances() []ec2Instance {
	var out []ec2Instance
	for _, res := range r.Reservations {
		out = append(out, res.Instances...)
	}
	return out
}

// terminateInstancesResponse is TerminateInstances' answer: each
// instance's state change.
type terminateInstancesResponse struct {
	Instances []struct {
		InstanceID   string `xml:"instanceId"`
		CurrentState string `xml:"currentState>name"`
	} `xml:"instancesSet>item"`
}

// spotRequest is a spot instance request with its status.
type spotRequest struct {
	InstanceID string `xml:"instanceId"`
	Status     struct {
		Code    string `xml:"code"`
		Message string `xml:"message"`
		// UpdateTime is when the status last changed (ISO 8601); "" when
		// EC2 gives none.
		UpdateTime string `xml:"updateTime"`
	} `xml:"status"`
}

// updated is when the request's status changed, if EC2 says so.
func (r spotRequest) updated() (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, r.Status.UpdateTime)
	return t, err == nil
}

// describeSpotRequestsResponse is one page of
// DescribeSpotInstanceRequests.
type describeSpotRequestsResponse struct {
	Requests  []spotRequest `xml:"spotInstanceRequestSet>item"`
	NextToken string        `xml:"nextToken"`
}

// describeImagesResponse is DescribeImages' answer.
type describeImagesResponse struct {
	Images []struct {
		ImageID        string `xml:"imageId"`
		RootDeviceName string `xml:"rootDeviceName"`
	} `xml:"imagesSet>item"`
}

// describeInstanceTypesResponse is DescribeInstanceTypes' answer.
type describeInstanceTypesResponse struct {
	InstanceTypes []instanceTypeInfo `xml:"instanceTypeSet>item"`
}

type instanceTypeInfo struct {
	InstanceType string `xml:"instanceType"`
	// GPUs lists each kind of GPU the type has; a type without GPUs has
	// no gpuInfo.
	GPUs []struct {
		Count int `xml:"count"`
	} `xml:"gpuInfo>gpus>item"`
}

// gpus is the type's count of GPUs of every kind.
func (t instanceTypeInfo) gpus() int {
	n := 0
	for _, g := range t.GPUs {
		n += g.Count
	}
	return n
}

// errorResponse is EC2's error document, the body of every failed call.
type errorResponse struct {
	Errors []struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Errors>Error"`
	RequestID string `xml:"RequestID"`
}
