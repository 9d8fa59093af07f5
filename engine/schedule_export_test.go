package engine

// KeyHashOf is the request hash a schedule's slot key is stored with.
func KeyHashOf(key string) string { return keyHash(key) }
