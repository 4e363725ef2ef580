"""The Compose s3 profile's S3-compatible store: SeaweedFS run by s3.serve."""
