"""The identity pack: suspicious sign-in, MFA fatigue and brute force, with Okta and Entra ID."""
