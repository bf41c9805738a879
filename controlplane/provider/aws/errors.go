package aws

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errKind is what an EC2 failure means for the launch.
type errKind int

const (
	// kindOther: a failure of the service or the network, retried
	// already where a retry could help.
	kindOther errKind = iota
	// kindCapacity: this subnet's zone cannot start the type now; another
	// zone may.
	kindCapacity
	// kindAuth: the credentials were refused or lack a permission.
	kindAuth
	// kindQuota: an account limit; no zone will do better.
	kindQuota
	// kindRefused: EC2 refused the request as it is (a bad image, subnet
	// or parameter); it will refuse it again.
	kindRefused
)

// Error codes as EC2 documents them. A subnet without free addresses is
// one without capacity: another subnet may have them. RequestExpired is
// EC2's answer to session credentials that have expired, or to a clock
// too far off; either is the operator's to fix.
var (
	capacityCodes = codeSet("InsufficientInstanceCapacity", "InsufficientCapacity",
		"InsufficientHostCapacity", "InsufficientReservedInstanceCapacity", "Unsupported",
		"InsufficientFreeAddressesInSubnet")
	authCodes = codeSet("AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId",
		"SignatureDoesNotMatch", "ExpiredToken", "RequestExpired", "OptInRequired", "Blocked",
		"MissingAuthenticationToken", "AccessDenied", "PendingVerification")
	quotaCodes = codeSet("InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded",
		"ResourceLimitExceeded")
)

func codeSet(codes ...string) map[string]bool {
	m := make(map[string]bool, len(codes))
	for _, c := range codes {
		m[c] = true
	}
	return m
}

// apiError returns the EC2 error in err's chain.
func apiError(err error) (*ec2Error, bool) {
	var ae *ec2Error
	ok := errors.As(err, &ae)
	return ae, ok
}

func kindOf(err error) errKind {
	var nc *noCredentialsError
	if errors.As(err, &nc) {
		return kindAuth
	}
	ae, ok := apiError(err)
	if !ok {
		return kindOther
	}
	code := ae.code
	switch {
	case capacityCodes[code]:
		return kindCapacity
	case authCodes[code]:
		return kindAuth
	case quotaCodes[code]:
		return kindQuota
	case code == "IdempotentParameterMismatch":
		return kindRefused
	case strings.HasPrefix(code, "Invalid") || strings.HasPrefix(code, "Missing") || code == "UnknownParameter":
		return kindRefused
	}
	return kindOther
}

// describe is EC2's code and message, or the error's text for a failure
// without an EC2 answer.
func describe(err error) string {
	var nc *noCapacityError
	if errors.As(err, &nc) {
		return nc.Error()
	}
	if ae, ok := apiError(err); ok {
		return ae.code + ": " + ae.message
	}
	return err.Error()
}

// statusOf turns a failed call into the error the operator sees: a gRPC
// status for what the operator must fix, the error itself (Unavailable)
// for the rest.
func statusOf(op string, err error) error {
	switch kindOf(err) {
	case kindAuth:
		var nc *noCredentialsError
		if errors.As(err, &nc) {
			return status.Errorf(codes.FailedPrecondition, "aws: no credentials for %s: %v", op, nc.err)
		}
		return status.Errorf(codes.FailedPrecondition, "aws: credentials refused: %s: %s", op, describe(err))
	case kindQuota:
		return status.Errorf(codes.ResourceExhausted, "aws: account limit: %s: %s", op, describe(err))
	case kindRefused:
		return status.Errorf(codes.FailedPrecondition, "aws: %s refused: %s", op, describe(err))
	case kindCapacity:
		return status.Errorf(codes.ResourceExhausted, "aws: %s: %s", op, describe(err))
	}
	return fmt.Errorf("aws: %s: %w", op, err)
}
