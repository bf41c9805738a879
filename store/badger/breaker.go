package badgerstore

import (
	"github.com/dgraph-io/badger/v4"

	"github.com/navarch/navarch/store"
)

// putBreaker writes the breaker state under b/breaker in the shared
// encoding (store.EncodeBreaker).
func putBreaker(txn *badger.Txn, b *store.BreakerState) error {
	v, err := store.EncodeBreaker(b)
	if err != nil {
		return err
	}
	return txn.Set([]byte(keyBreaker), v)
}
