"""Database schema and its migrations, written once for both engines (SQLite and PostgreSQL).

``{pk}`` and ``{blob}`` are filled per engine.  Migrations are append-only: a released step is never
edited, a change is a new step, and the engine applies the missing ones at start.
"""
from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    # 1: journal, patients, visits, orders, requested procedures, scheduled steps, history, counters
    [
        """CREATE TABLE journal (
            id {pk},
            received_at TEXT NOT NULL,
            peer TEXT NOT NULL DEFAULT '',
            sending_application TEXT NOT NULL DEFAULT '',
            sending_facility TEXT NOT NULL DEFAULT '',
            control_id TEXT NOT NULL DEFAULT '',
            message_code TEXT NOT NULL DEFAULT '',
            hl7_version TEXT NOT NULL DEFAULT '',
            payload_hash TEXT NOT NULL,
            raw {blob} NOT NULL,
            status TEXT NOT NULL,
            ack_code TEXT NOT NULL DEFAULT '',
            ack {blob},
            reason TEXT NOT NULL DEFAULT '',
            rule TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX journal_key ON journal (sending_application, sending_facility, control_id)",
        "CREATE INDEX journal_received_at ON journal (received_at)",
        """CREATE TABLE patients (
            id {pk},
            patient_id TEXT NOT NULL,
            issuer TEXT NOT NULL DEFAULT '',
            name_norm TEXT NOT NULL DEFAULT '',
            birth_date TEXT NOT NULL DEFAULT '',
            sex TEXT NOT NULL DEFAULT '',
            referring_physician_norm TEXT NOT NULL DEFAULT '',
            admission_id TEXT NOT NULL DEFAULT '',
            attributes TEXT NOT NULL DEFAULT '{{}}',
            merged_into INTEGER REFERENCES patients (id),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "CREATE UNIQUE INDEX patients_key ON patients (patient_id, issuer)",
        "CREATE INDEX patients_name_norm ON patients (name_norm)",
        "CREATE INDEX patients_id ON patients (patient_id)",
        """CREATE TABLE patient_identifiers (
            id {pk},
            patient_ref INTEGER NOT NULL REFERENCES patients (id),
            patient_id TEXT NOT NULL,
            issuer TEXT NOT NULL DEFAULT '',
            identifier_type TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT 'pid'
        )""",
        "CREATE UNIQUE INDEX patient_identifiers_key ON patient_identifiers (patient_ref, patient_id, issuer)",
        "CREATE INDEX patient_identifiers_id ON patient_identifiers (patient_id, issuer)",
        """CREATE TABLE visits (
            id {pk},
            patient_ref INTEGER NOT NULL REFERENCES patients (id),
            visit_number TEXT NOT NULL,
            patient_class TEXT NOT NULL DEFAULT '',
            location TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'active',
            updated_at TEXT NOT NULL
        )""",
        "CREATE UNIQUE INDEX visits_key ON visits (patient_ref, visit_number)",
        """CREATE TABLE orders (
            id {pk},
            patient_ref INTEGER NOT NULL REFERENCES patients (id),
            placer_order_number TEXT NOT NULL DEFAULT '',
            filler_order_number TEXT NOT NULL DEFAULT '',
            sending_application TEXT NOT NULL DEFAULT '',
            deployment_mode TEXT NOT NULL DEFAULT 'broker',
            visit_number TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "CREATE INDEX orders_placer ON orders (placer_order_number)",
        "CREATE INDEX orders_filler ON orders (filler_order_number)",
        "CREATE INDEX orders_patient ON orders (patient_ref)",
        """CREATE TABLE requested_procedures (
            id {pk},
            order_ref INTEGER NOT NULL REFERENCES orders (id),
            accession_number TEXT NOT NULL,
            requested_procedure_id TEXT NOT NULL,
            study_instance_uid TEXT NOT NULL,
            priority TEXT NOT NULL DEFAULT '',
            requesting_physician_norm TEXT NOT NULL DEFAULT '',
            procedure_code_value TEXT NOT NULL DEFAULT '',
            procedure_code_scheme TEXT NOT NULL DEFAULT '',
            attributes TEXT NOT NULL DEFAULT '{{}}',
            updated_at TEXT NOT NULL
        )""",
        "CREATE UNIQUE INDEX requested_procedures_study ON requested_procedures (study_instance_uid)",
        "CREATE INDEX requested_procedures_accession ON requested_procedures (accession_number)",
        "CREATE INDEX requested_procedures_order ON requested_procedures (order_ref)",
        """CREATE TABLE scheduled_steps (
            id {pk},
            requested_procedure_ref INTEGER NOT NULL REFERENCES requested_procedures (id),
            sps_id TEXT NOT NULL,
            status TEXT NOT NULL,
            station_ae_title TEXT NOT NULL DEFAULT '',
            station_name TEXT NOT NULL DEFAULT '',
            location TEXT NOT NULL DEFAULT '',
            modality TEXT NOT NULL DEFAULT '',
            start_datetime TEXT NOT NULL DEFAULT '',
            performing_physician_norm TEXT NOT NULL DEFAULT '',
            attributes TEXT NOT NULL DEFAULT '{{}}',
            updated_at TEXT NOT NULL
        )""",
        "CREATE UNIQUE INDEX scheduled_steps_key ON scheduled_steps (requested_procedure_ref, sps_id)",
        "CREATE INDEX scheduled_steps_station ON scheduled_steps (station_ae_title, start_datetime)",
        "CREATE INDEX scheduled_steps_modality ON scheduled_steps (modality, start_datetime)",
        "CREATE INDEX scheduled_steps_start ON scheduled_steps (start_datetime)",
        "CREATE INDEX scheduled_steps_status ON scheduled_steps (status)",
        """CREATE TABLE order_history (
            id {pk},
            order_ref INTEGER NOT NULL REFERENCES orders (id),
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            journal_ref INTEGER REFERENCES journal (id)
        )""",
        "CREATE INDEX order_history_order ON order_history (order_ref, id)",
        """CREATE TABLE patient_history (
            id {pk},
            patient_ref INTEGER NOT NULL REFERENCES patients (id),
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            journal_ref INTEGER REFERENCES journal (id)
        )""",
        "CREATE INDEX patient_history_patient ON patient_history (patient_ref, id)",
        """CREATE TABLE counters (
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        )""",
    ],
]

MIGRATIONS.append([
    # 2: DICOM side: performed procedure steps (MPPS), stored instances, storage commitment requests
    """CREATE TABLE performed_steps (
        id {pk},
        sop_instance_uid TEXT NOT NULL,
        status TEXT NOT NULL,
        pps_id TEXT NOT NULL DEFAULT '',
        performed_station_ae_title TEXT NOT NULL DEFAULT '',
        calling_ae_title TEXT NOT NULL DEFAULT '',
        study_instance_uid TEXT NOT NULL DEFAULT '',
        unscheduled INTEGER NOT NULL DEFAULT 0,
        dataset {blob} NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE UNIQUE INDEX performed_steps_uid ON performed_steps (sop_instance_uid)",
    """CREATE TABLE performed_step_versions (
        id {pk},
        performed_step_ref INTEGER NOT NULL REFERENCES performed_steps (id),
        at TEXT NOT NULL,
        operation TEXT NOT NULL,
        status TEXT NOT NULL,
        dataset {blob} NOT NULL
    )""",
    "CREATE INDEX performed_step_versions_step ON performed_step_versions (performed_step_ref, id)",
    """CREATE TABLE performed_step_links (
        performed_step_ref INTEGER NOT NULL REFERENCES performed_steps (id),
        step_ref INTEGER NOT NULL REFERENCES scheduled_steps (id)
    )""",
    "CREATE UNIQUE INDEX performed_step_links_key ON performed_step_links (performed_step_ref, step_ref)",
    "CREATE INDEX performed_step_links_step ON performed_step_links (step_ref)",
    """CREATE TABLE instances (
        id {pk},
        sop_instance_uid TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        study_instance_uid TEXT NOT NULL,
        series_instance_uid TEXT NOT NULL,
        patient_id TEXT NOT NULL DEFAULT '',
        patient_name_norm TEXT NOT NULL DEFAULT '',
        accession_number TEXT NOT NULL DEFAULT '',
        modality TEXT NOT NULL DEFAULT '',
        study_date TEXT NOT NULL DEFAULT '',
        series_number TEXT NOT NULL DEFAULT '',
        instance_number TEXT NOT NULL DEFAULT '',
        transfer_syntax_uid TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        path TEXT NOT NULL,
        received_from TEXT NOT NULL DEFAULT '',
        received_at TEXT NOT NULL,
        requested_procedure_ref INTEGER REFERENCES requested_procedures (id),
        hidden INTEGER NOT NULL DEFAULT 0,
        attributes TEXT NOT NULL DEFAULT '{{}}'
    )""",
    "CREATE UNIQUE INDEX instances_uid ON instances (sop_instance_uid)",
    "CREATE INDEX instances_study ON instances (study_instance_uid, series_instance_uid)",
    "CREATE INDEX instances_series ON instances (series_instance_uid)",
    "CREATE INDEX instances_patient ON instances (patient_id)",
    "CREATE INDEX instances_accession ON instances (accession_number)",
    """CREATE TABLE commitments (
        id {pk},
        transaction_uid TEXT NOT NULL,
        calling_ae_title TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        status TEXT NOT NULL,
        request TEXT NOT NULL,
        result TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL DEFAULT '',
        last_error TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX commitments_transaction ON commitments (transaction_uid)",
    "CREATE INDEX commitments_status ON commitments (status, next_attempt_at)",
    """CREATE TABLE events (
        id {pk},
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '',
        order_ref INTEGER REFERENCES orders (id),
        journal_ref INTEGER REFERENCES journal (id)
    )""",
    "CREATE INDEX events_kind ON events (kind, id)",
    # Q/R (RAD-11) matching columns of the required study-level keys, and what else the index needs
    "ALTER TABLE instances ADD COLUMN study_time TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE instances ADD COLUMN study_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE instances ADD COLUMN referring_physician_norm TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX instances_patient_name ON instances (patient_name_norm)",
    "CREATE INDEX instances_study_date ON instances (study_date)",
    "CREATE INDEX instances_procedure ON instances (requested_procedure_ref)",
    # series a presentation state references (RAD-9: a PS is returned with the study it annotates)
    """CREATE TABLE instance_references (
        instance_ref INTEGER NOT NULL REFERENCES instances (id),
        series_instance_uid TEXT NOT NULL
    )""",
    "CREATE INDEX instance_references_series ON instance_references (series_instance_uid)",
    "CREATE INDEX instance_references_instance ON instance_references (instance_ref)",
    # instances or series withdrawn from Q/R (MPPS discontinued 110514), also those not received yet
    """CREATE TABLE hidden_references (
        uid TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        performed_step_ref INTEGER REFERENCES performed_steps (id),
        at TEXT NOT NULL
    )""",
    "CREATE INDEX hidden_references_uid ON hidden_references (uid)",
])

MIGRATIONS.append([
    # 3: outbound: which destinations an order reports to, event dispatch state, the durable outbox
    "ALTER TABLE orders ADD COLUMN outbound TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE events ADD COLUMN destinations TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE events ADD COLUMN dispatched INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX events_undispatched ON events (dispatched, id)",
    """CREATE TABLE outbox (
        id {pk},
        destination TEXT NOT NULL,
        created_at TEXT NOT NULL,
        event_ref INTEGER REFERENCES events (id),
        kind TEXT NOT NULL,
        control_id TEXT NOT NULL,
        accession_number TEXT NOT NULL DEFAULT '',
        message {blob} NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        rejections INTEGER NOT NULL DEFAULT 0,
        next_attempt_at DOUBLE PRECISION NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        ack {blob},
        delivered_at TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX outbox_queue ON outbox (destination, status, id)",
    "CREATE INDEX scheduled_steps_sps_id ON scheduled_steps (sps_id)",
])

MIGRATIONS.append([
    # 4: DICOM forwarding (received instances and MPPS to downstream AEs), queued and retried
    """CREATE TABLE dicom_forwards (
        id {pk},
        destination TEXT NOT NULL,
        kind TEXT NOT NULL,
        source_ref INTEGER NOT NULL,
        sop_instance_uid TEXT NOT NULL,
        created_at TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at DOUBLE PRECISION NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX dicom_forwards_queue ON dicom_forwards (destination, status, id)",
])

MIGRATIONS.append([
    # 5: operators (issue 13): users, API tokens, console sessions, the audit trail of their writes,
    #    and the idempotency keys of API POSTs
    """CREATE TABLE users (
        id {pk},
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE api_tokens (
        id {pk},
        user_ref INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        token_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE sessions (
        id {pk},
        user_ref INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        session_hash TEXT NOT NULL UNIQUE,
        csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE operator_audit (
        id {pk},
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        client TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        before_json TEXT,
        after_json TEXT
    )""",
    "CREATE INDEX operator_audit_actor ON operator_audit (actor, id)",
    """CREATE TABLE idempotency_keys (
        key TEXT PRIMARY KEY,
        operation TEXT NOT NULL,
        created_at TEXT NOT NULL,
        status INTEGER NOT NULL,
        response TEXT NOT NULL
    )""",
])

MIGRATIONS.append([
    # 6: the API's journal filters by status and message type, newest first (issue 13), without reading
    #    every row when few or none match
    "CREATE INDEX journal_status ON journal (status, id)",
    "CREATE INDEX journal_message_code ON journal (message_code, id)",
])

MIGRATIONS.append([
    # 7: an idempotency key keeps a hash of the request it was first used with (method, path, parameters,
    #    body), so a retry with another body is refused instead of answered with the first one's answer;
    #    keys kept before have '' (their retries are answered as before)
    "ALTER TABLE idempotency_keys ADD COLUMN request_hash TEXT NOT NULL DEFAULT ''",
])

MIGRATIONS.append([
    # 8: what one journal
    #    message changed (GET /journal/{id}) is read by journal_ref, so the history, event and outbox
    #    rows are indexed by it; a message resent from the journal keeps its source in outbox.journal_ref
    "CREATE INDEX order_history_journal ON order_history (journal_ref)",
    "CREATE INDEX patient_history_journal ON patient_history (journal_ref)",
    "CREATE INDEX events_journal ON events (journal_ref)",
    "CREATE INDEX outbox_event ON outbox (event_ref)",
    "ALTER TABLE outbox ADD COLUMN journal_ref INTEGER REFERENCES journal (id)",
    "CREATE INDEX outbox_journal ON outbox (journal_ref)",
])

MIGRATIONS.append([
    # 9: the ATNA audit trail (issue 14): audit messages waiting for the Audit Record Repository, in order,
    #    and how far the recorder has read the rows it audits (domain events, operator actions)
    """CREATE TABLE audit_queue (
        id {pk},
        created_at TEXT NOT NULL,
        event TEXT NOT NULL,
        message {blob} NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE audit_cursors (
        source TEXT PRIMARY KEY,
        last_id INTEGER NOT NULL
    )""",
])

MIGRATIONS.append([
    # 10: several engines on one PostgreSQL database (issue 15): each running engine's heartbeat, and the
    #     leases that let one instance at a time deliver a destination's queue or run a once-per-cluster
    #     job; a lease's generation grows at every change of holder and fences a stale holder's writes
    """CREATE TABLE cluster_instances (
        name TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        heartbeat_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE cluster_leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        generation INTEGER NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
])

MIGRATIONS.append([
    # 11 (issue 15): the duplicate check is a primary key, so it holds across instances on one PostgreSQL:
    #    each processed (MSH-3, MSH-4, MSH-10) names the journal entry holding it (whose ACK a resend gets);
    #    filled from the journal's processed entries (the latest holds its key)
    """CREATE TABLE journal_keys (
        sending_application TEXT NOT NULL,
        sending_facility TEXT NOT NULL,
        control_id TEXT NOT NULL,
        journal_ref INTEGER NOT NULL REFERENCES journal (id),
        received_at TEXT NOT NULL,
        PRIMARY KEY (sending_application, sending_facility, control_id)
    )""",
    """INSERT INTO journal_keys (sending_application, sending_facility, control_id, journal_ref, received_at)
        SELECT sending_application, sending_facility, control_id, MAX(id), MAX(received_at) FROM journal
        WHERE control_id <> '' AND status NOT IN ('failed', 'duplicate', 'processing')
        GROUP BY sending_application, sending_facility, control_id""",
])

MIGRATIONS.append([
    # 12 (issue 16): study stability: when the last new instance of each study arrived, the quiet time it
    #    must stay without one, and whether that stable point was handled (so a restart does not redo it)
    """CREATE TABLE study_arrivals (
        study_instance_uid TEXT PRIMARY KEY,
        last_arrival_at DOUBLE PRECISION NOT NULL,
        stable_due_at DOUBLE PRECISION NOT NULL,
        arrivals INTEGER NOT NULL DEFAULT 0,
        pending INTEGER NOT NULL DEFAULT 1,
        stable_points INTEGER NOT NULL DEFAULT 0,
        stable_at TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX study_arrivals_due ON study_arrivals (pending, stable_due_at)",
])

MIGRATIONS.append([
    # 13 (issue 16): worklist housekeeping.  A step aged out with age_out.mode remove keeps its status but
    #    leaves the worklist (aged_out_at); retention purges by age, each table read through an index on it
    "ALTER TABLE scheduled_steps ADD COLUMN aged_out_at TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX outbox_delivered ON outbox (status, delivered_at)",
    "CREATE INDEX order_history_at ON order_history (at)",
    "CREATE INDEX patient_history_at ON patient_history (at)",
    "CREATE INDEX operator_audit_at ON operator_audit (at)",
    "CREATE INDEX journal_keys_journal ON journal_keys (journal_ref)",
])

MIGRATIONS.append([
    # 14 (issue 16): modalities without MPPS: the steps their images complete once quiet (due time pushed by
    #    each new instance), and steps taken off the worklist without MPPS (drop_on_study_arrival)
    """CREATE TABLE image_completions (
        step_ref INTEGER PRIMARY KEY REFERENCES scheduled_steps (id),
        study_instance_uid TEXT NOT NULL,
        quiet_seconds DOUBLE PRECISION NOT NULL,
        quiet_text TEXT NOT NULL,
        due_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX image_completions_due ON image_completions (due_at)",
    "ALTER TABLE scheduled_steps ADD COLUMN off_worklist TEXT NOT NULL DEFAULT ''",
])

MIGRATIONS.append([
    # 15 (issue 16): DICOM Instance Availability Notifications (RAD-49): one row per study per stable point
    #    with the encoded IAN data set and its SOP Instance UID; each receiving AE gets a dicom_forwards row
    #    of kind 'ian' naming it (source_ref), delivered as N-CREATE in the forwards' order with their retries
    """CREATE TABLE availability_notices (
        id {pk},
        study_instance_uid TEXT NOT NULL,
        sop_instance_uid TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        dataset {blob} NOT NULL
    )""",
    "CREATE INDEX availability_notices_study ON availability_notices (study_instance_uid, id)",
])

MIGRATIONS.append([
    # 16 (issue 16): what a retrieve applies over an instance's stored file (the file stays as received):
    #    the surviving patient's ID and demographics after an ADT A08 / A40 (IHE PIR), the order's
    #    accession after an operator linked an unscheduled MPPS (swf link); keyword -> value, JSON
    "ALTER TABLE instances ADD COLUMN corrections TEXT NOT NULL DEFAULT '{{}}'",
])

MIGRATIONS.append([
    # 17 (issue 15): the instance that received a storage commitment request (and holds its N-ACTION's
    #    association while it is open), so the holder of the requester's lease knows when a report for a
    #    requester without host/port must wait for that instance instead of being parked as dead
    "ALTER TABLE commitments ADD COLUMN received_by TEXT NOT NULL DEFAULT ''",
])

LATEST_VERSION = len(MIGRATIONS)
