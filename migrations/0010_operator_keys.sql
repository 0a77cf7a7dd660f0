-- Each operator's X25519 key pair: repositories' master keys are sealed to the super admins'
-- public keys; the private key is wrapped by a key derived from the operator's sign-in password
-- (a password key slot, JSON).
ALTER TABLE operators ADD COLUMN public_key TEXT;
ALTER TABLE operators ADD COLUMN private_sealed TEXT;
