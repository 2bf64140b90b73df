"""initial schema

Revision ID: 0001
Revises: 
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('secret_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('rate_limit_per_min', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('revoked_at', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_id', name=op.f('uq_api_keys_key_id'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', sa.BigInteger(), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_key_id'), ['key_id'], unique=False)

    op.create_table('devices',
    sa.Column('serial', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('identity', sa.String(length=16), nullable=False),
    sa.Column('seed_encrypted', sa.LargeBinary(), nullable=True),
    sa.Column('auth_key_encrypted', sa.LargeBinary(), nullable=True),
    sa.Column('tx_power_dbm', sa.Integer(), nullable=True),
    sa.Column('board', sa.String(length=64), nullable=False),
    sa.Column('venue_name', sa.String(length=200), nullable=True),
    sa.Column('venue_place', sa.String(length=200), nullable=True),
    sa.Column('holder_ref', sa.String(length=200), nullable=True),
    sa.Column('registered_at', sa.BigInteger(), nullable=False),
    sa.Column('registered_by', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('serial', name=op.f('pk_devices'))
    )
    op.create_table('key_imports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('start_timestamp', sa.BigInteger(), nullable=False),
    sa.Column('end_timestamp', sa.BigInteger(), nullable=False),
    sa.Column('keys', sa.Integer(), nullable=False),
    sa.Column('signature_verified', sa.Boolean(), nullable=False),
    sa.Column('imported_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_key_imports')),
    sa.UniqueConstraint('sha256', name=op.f('uq_key_imports_sha256'))
    )
    op.create_table('sync_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('serial', sa.String(length=32), nullable=False),
    sa.Column('synced_at', sa.BigInteger(), nullable=False),
    sa.Column('token_time', sa.BigInteger(), nullable=False),
    sa.Column('correction_s', sa.BigInteger(), nullable=False),
    sa.Column('clock_was_set', sa.Boolean(), nullable=False),
    sa.Column('first_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.Column('uploaded_at', sa.BigInteger(), nullable=False),
    sa.Column('uploaded_by', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['serial'], ['devices.serial'], name=op.f('fk_sync_sessions_serial_devices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_sessions')),
    sa.UniqueConstraint('serial', 'synced_at', 'first_seq', 'last_seq', name='uq_sync_sessions_identity')
    )
    with op.batch_alter_table('sync_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_sessions_serial'), ['serial'], unique=False)

    op.create_table('verification_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('serial', sa.String(length=32), nullable=False),
    sa.Column('report_type', sa.Integer(), nullable=False),
    sa.Column('onset_at', sa.BigInteger(), nullable=True),
    sa.Column('issued_by', sa.String(length=32), nullable=False),
    sa.Column('issued_at', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.Column('redeemed_at', sa.BigInteger(), nullable=True),
    sa.Column('redeemed_by', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['serial'], ['devices.serial'], name=op.f('fk_verification_codes_serial_devices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_verification_codes')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_verification_codes_code_hash'))
    )
    with op.batch_alter_table('verification_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_verification_codes_serial'), ['serial'], unique=False)

    op.create_table('cases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('serial', sa.String(length=32), nullable=False),
    sa.Column('code_id', sa.Integer(), nullable=False),
    sa.Column('report_type', sa.Integer(), nullable=False),
    sa.Column('reported_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['code_id'], ['verification_codes.id'], name=op.f('fk_cases_code_id_verification_codes')),
    sa.ForeignKeyConstraint(['serial'], ['devices.serial'], name=op.f('fk_cases_serial_devices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases')),
    sa.UniqueConstraint('code_id', name=op.f('uq_cases_code_id'))
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cases_serial'), ['serial'], unique=False)

    op.create_table('encounters',
    sa.Column('serial', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('raw', sa.LargeBinary(length=32), nullable=False),
    sa.Column('rpi', sa.LargeBinary(length=16), nullable=False),
    sa.Column('aem', sa.LargeBinary(length=4), nullable=False),
    sa.Column('first_seen_token', sa.BigInteger(), nullable=False),
    sa.Column('first_seen', sa.BigInteger(), nullable=False),
    sa.Column('duration_s', sa.Integer(), nullable=False),
    sa.Column('scans', sa.Integer(), nullable=False),
    sa.Column('rssi_max', sa.Integer(), nullable=False),
    sa.Column('rssi_mean', sa.Integer(), nullable=False),
    sa.Column('flags', sa.Integer(), nullable=False),
    sa.Column('sync_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['serial'], ['devices.serial'], name=op.f('fk_encounters_serial_devices')),
    sa.ForeignKeyConstraint(['sync_id'], ['sync_sessions.id'], name=op.f('fk_encounters_sync_id_sync_sessions')),
    sa.PrimaryKeyConstraint('serial', 'seq', name=op.f('pk_encounters'))
    )
    with op.batch_alter_table('encounters', schema=None) as batch_op:
        batch_op.create_index('ix_encounters_first_seen', ['first_seen'], unique=False)
        batch_op.create_index(batch_op.f('ix_encounters_rpi'), ['rpi'], unique=False)

    op.create_table('diagnosis_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tek', sa.LargeBinary(length=16), nullable=False),
    sa.Column('rolling_start_interval', sa.BigInteger(), nullable=False),
    sa.Column('rolling_period', sa.Integer(), nullable=False),
    sa.Column('report_type', sa.Integer(), nullable=False),
    sa.Column('transmission_risk', sa.Integer(), nullable=False),
    sa.Column('days_since_onset', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=True),
    sa.Column('import_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_diagnosis_keys_case_id_cases')),
    sa.ForeignKeyConstraint(['import_id'], ['key_imports.id'], name=op.f('fk_diagnosis_keys_import_id_key_imports')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_diagnosis_keys')),
    sa.UniqueConstraint('tek', 'rolling_start_interval', name='uq_diagnosis_keys_tek_start')
    )
    with op.batch_alter_table('diagnosis_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_diagnosis_keys_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_diagnosis_keys_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_diagnosis_keys_rolling_start_interval'), ['rolling_start_interval'], unique=False)

    op.create_table('exposures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('serial', sa.String(length=32), nullable=False),
    sa.Column('day', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=True),
    sa.Column('first_seen', sa.BigInteger(), nullable=False),
    sa.Column('last_seen', sa.BigInteger(), nullable=False),
    sa.Column('duration_s', sa.Integer(), nullable=False),
    sa.Column('min_attenuation_db', sa.Integer(), nullable=True),
    sa.Column('weighted_s', sa.Float(), nullable=False),
    sa.Column('exposed', sa.Boolean(), nullable=False),
    sa.Column('computed_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_exposures_case_id_cases')),
    sa.ForeignKeyConstraint(['serial'], ['devices.serial'], name=op.f('fk_exposures_serial_devices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exposures')),
    sa.UniqueConstraint('serial', 'day', 'source', 'method', name='uq_exposures_identity')
    )
    with op.batch_alter_table('exposures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exposures_serial'), ['serial'], unique=False)
        batch_op.create_index(batch_op.f('ix_exposures_source'), ['source'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('exposures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exposures_source'))
        batch_op.drop_index(batch_op.f('ix_exposures_serial'))

    op.drop_table('exposures')
    with op.batch_alter_table('diagnosis_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_diagnosis_keys_rolling_start_interval'))
        batch_op.drop_index(batch_op.f('ix_diagnosis_keys_created_at'))
        batch_op.drop_index(batch_op.f('ix_diagnosis_keys_case_id'))

    op.drop_table('diagnosis_keys')
    with op.batch_alter_table('encounters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_encounters_rpi'))
        batch_op.drop_index('ix_encounters_first_seen')

    op.drop_table('encounters')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_serial'))

    op.drop_table('cases')
    with op.batch_alter_table('verification_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_verification_codes_serial'))

    op.drop_table('verification_codes')
    with op.batch_alter_table('sync_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_sessions_serial'))

    op.drop_table('sync_sessions')
    op.drop_table('key_imports')
    op.drop_table('devices')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_key_id'))
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')
    op.drop_table('api_keys')
