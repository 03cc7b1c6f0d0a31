"""Metrics shared by the tasks: ranking (Hits@k, MRR), accuracy by question type, and text overlap."""
