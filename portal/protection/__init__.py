"""What protects the portal and the people in it: rate limits, security headers, logs with
no personal data, sealing and keyed digests, and the rules for personal data itself."""
