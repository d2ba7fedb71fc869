package app

// KeyCacheLen returns how many subjects' keys a holds unwrapped.
func KeyCacheLen(a *App) int {
	return a.keyCache.Len()
}
