//! The writeback scenarios that involve the store (ordering, claims, kills) against DynamoDB
//! Local (started by scripts/test.sh). A fresh table per test.

integration_tests::writeback_scenarios!(integration_tests::dynamodb_table("s1bridge-writeback").await);
