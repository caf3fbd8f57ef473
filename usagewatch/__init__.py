"""usagewatch: watches a data warehouse's query logs and tells the support team who could use a hand."""

__version__ = "0.1.0"
