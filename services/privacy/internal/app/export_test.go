package app

// KeyCacheLen returns how many subjects' keys a holds unwrapped.
func KeyCacheLen(a *App) int {
	a.keyCache.mu.Lock()
	defer a.keyCache.mu.Unlock()
	return a.keyCache.entries.Len()
}
