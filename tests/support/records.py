"""Synthetic CLD records for service tests (NHS numbers from the 999 test range only)."""

from __future__ import annotations

from typing import Any


def service_record(**overrides: Any) -> dict[str, Any]:
    """A Service event for a service user, as a source system would send it (ISO dates allowed)."""
    rec: dict[str, Any] = {
        "la_code": "318",
        "reporting_period_start_date": "2025-04-01",
        "reporting_period_end_date": "31/03/2026",
        "nhs_number": "9990000018",
        "la_person_unique_identifier": "P000123",
        "first_name": "Test",
        "last_name": "Person",
        "gender": "Female",
        "ethnicity": "White: Irish",
        "date_of_birth": "1950-06-15",
        "client_type": "Service user",
        "primary_support_reason": "Unknown",
        "postcode": "AB1 2CD",
        "accommodation_status": "Tenant: Private landlord",
        "has_unpaid_carer": "No",
        "event_type": "Service",
        "event_reference": "EV000001",
        "event_start_date": "2025-05-01",
        "service_type": "Long term support: Community",
        "service_component": "Home support or domiciliary care",
        "delivery_mechanism": "Direct payment",
        "event_outcome": "Continuation of support or services",
        "client_funding_status": "Fully social care funded",
        "unit_cost": "20.50",
        "cost_frequency_unit_type": "Weekly",
        "planned_units_per_week": "10",
    }
    rec.update(overrides)
    return {k: v for k, v in rec.items() if v is not None}
