"""Discovery backends other than HAP, built on hap's shared pieces."""
