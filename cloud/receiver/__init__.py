"""The receiver: the device data path (batches, enrolment, rotation) and the operator API."""
