"""The built-in behaviour, written as ordinary plugins (each registered first and marked trylast)."""
