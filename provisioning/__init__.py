"""`edgectl`: bring gateways into the platform and take them out.

Operator side: enrolment tokens, device list and state, revocation, fleet install bundles
(`provisioning.fleet`), all through the receiver's admin API (`provisioning.client`). Gateway
side: enrolment with proof of possession (`provisioning.enroll`), crash-safe key rotation
(`provisioning.rotate`), and `doctor` (`provisioning.doctor`). Key files follow the OpenSSH rules
(`provisioning.secretfiles`). Imports only `wire` and third-party libraries.
"""
