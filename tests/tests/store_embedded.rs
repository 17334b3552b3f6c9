//! The store contract against the embedded (redb) backend, in memory.

integration_tests::store_contract!(integration_tests::store_contract::embedded_in_memory());

#[tokio::test]
async fn a_file_backed_store_keeps_its_data_across_reopening() {
    use s1_shared::store::{Checkpoint, EmbeddedTable, Store};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let c = Checkpoint {
        watermark: None,
        ids_at_watermark: vec!["42".into()],
    };
    {
        let store = Store::new(std::sync::Arc::new(EmbeddedTable::open(&path).unwrap()));
        store.put_checkpoint("t1", "threats", &c).await.unwrap();
    }
    let store = Store::new(std::sync::Arc::new(EmbeddedTable::open(&path).unwrap()));
    assert_eq!(store.get_checkpoint("t1", "threats").await.unwrap(), Some(c));
    let err = EmbeddedTable::open(dir.path().join("no/such/dir/state.redb")).unwrap_err();
    assert!(err.to_string().contains("no/such/dir"), "{err}");
}
