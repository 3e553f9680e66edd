//! `connectord.v1.ConnectorService`: the connector resource RPCs.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{
    audit::Audit,
    config::ConfigCheck,
    convert::view,
    page_token,
    status::to_status,
    update_mask::{UpdateScope, build_patch},
    validate::{MAX_DESCRIPTION_CHARS, MAX_DISPLAY_NAME_CHARS, Violations},
};
use crate::{
    domain::{ConfigTypes, ConnectorKey, ConnectorRegistry, CredentialService, Error, ListQuery, NewConnector, SyncLifecycle},
    pb::{self, connector_service_server::ConnectorService},
};

/// Page size used when a list request asks for 0.
pub const DEFAULT_PAGE_SIZE: usize = 25;
/// Largest page size; larger requests are served this many.
pub const MAX_PAGE_SIZE: usize = 100;
/// Size above which a list page is cut short, in bytes. It keeps a page of 100 connectors
/// with large configs under the 4 MiB message limit of the server and of common clients.
pub const MAX_LIST_RESPONSE_BYTES: usize = 3 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ConnectorApiOptions {
    /// Largest encoded config accepted, in bytes.
    pub max_config_bytes: usize,
}

impl Default for ConnectorApiOptions {
    fn default() -> Self {
        Self { max_config_bytes: 64 * 1024 }
    }
}

/// Implementation of the generated `ConnectorService` trait.
pub struct ConnectorApi {
    registry: Arc<ConnectorRegistry>,
    pub(super) lifecycle: Arc<SyncLifecycle>,
    pub(super) credentials: Arc<CredentialService>,
    config_types: Arc<ConfigTypes>,
    options: ConnectorApiOptions,
}

/// The config of a new connector.
enum NewConfig<'a> {
    /// Create's config, which must be present.
    Required(Option<&'a prost_types::Any>),
    /// None yet: the owners of a delegated connector configure it later.
    Delegated,
}

impl ConnectorApi {
    pub fn new(
        registry: Arc<ConnectorRegistry>,
        lifecycle: Arc<SyncLifecycle>,
        credentials: Arc<CredentialService>,
        config_types: Arc<ConfigTypes>,
        options: ConnectorApiOptions,
    ) -> Self {
        Self { registry, lifecycle, credentials, config_types, options }
    }

    fn config_check(&self) -> ConfigCheck<'_> {
        ConfigCheck { types: &self.config_types, max_bytes: self.options.max_config_bytes }
    }

    /// Validates the fields of a Create or CreateDelegated request.
    #[allow(clippy::too_many_arguments)]
    fn new_connector(
        &self,
        app_id: &str,
        catalog_id: &str,
        display_name: &str,
        description: &str,
        user_ids: &[String],
        config: NewConfig<'_>,
        request_id: &str,
    ) -> Result<NewConnector, Error> {
        let mut violations = Violations::new();
        violations.id("app_id", app_id);
        violations.id("catalog_id", catalog_id);
        violations.text("display_name", display_name, MAX_DISPLAY_NAME_CHARS);
        violations.text("description", description, MAX_DESCRIPTION_CHARS);
        let user_ids = violations.user_ids("user_ids", user_ids);
        violations.optional_id("request_id", request_id);
        let config = match config {
            NewConfig::Required(Some(config)) => self.config_check().optional("config", Some(config), &mut violations),
            NewConfig::Required(None) => {
                violations.add(
                    "config",
                    "is missing: Create makes a configured connector. Send a config, or call CreateDelegated so that the owners configure it later",
                );
                None
            }
            NewConfig::Delegated => None,
        };
        violations.into_result()?;

        Ok(NewConnector {
            app_id: app_id.to_owned(),
            catalog_id: catalog_id.to_owned(),
            display_name: display_name.to_owned(),
            description: description.to_owned(),
            user_ids,
            config,
            request_id: (!request_id.is_empty()).then(|| request_id.to_owned()),
        })
    }

    async fn handle_create(
        &self,
        request: pb::ConnectorServiceCreateRequest,
        audit: &mut Audit,
    ) -> Result<pb::ConnectorServiceCreateResponse, Error> {
        audit.target(&request.app_id, "");
        let new = self.new_connector(
            &request.app_id,
            &request.catalog_id,
            &request.display_name,
            &request.description,
            &request.user_ids,
            NewConfig::Required(request.config.as_ref()),
            &request.request_id,
        )?;
        audit.changed(new.set_fields());

        let connector = self.registry.create(new).await?;

        audit.target(&connector.app_id, &connector.id);
        tracing::Span::current().record("connector_id", connector.id.as_str());
        tracing::debug!("connector created");
        Ok(pb::ConnectorServiceCreateResponse { connector_view: Some(view(connector, &self.config_types)), expanded: Vec::new() })
    }

    async fn handle_create_delegated(
        &self,
        request: pb::ConnectorServiceCreateDelegatedRequest,
        audit: &mut Audit,
    ) -> Result<pb::ConnectorServiceCreateDelegatedResponse, Error> {
        audit.target(&request.app_id, "");
        let new = self.new_connector(
            &request.app_id,
            &request.catalog_id,
            &request.display_name,
            &request.description,
            &request.user_ids,
            NewConfig::Delegated,
            &request.request_id,
        )?;
        audit.changed(new.set_fields());

        let connector = self.registry.create(new).await?;

        audit.target(&connector.app_id, &connector.id);
        tracing::Span::current().record("connector_id", connector.id.as_str());
        tracing::debug!("delegated connector created");
        Ok(pb::ConnectorServiceCreateDelegatedResponse { connector_view: Some(view(connector, &self.config_types)), expanded: Vec::new() })
    }

    async fn handle_delete(&self, request: pb::ConnectorServiceDeleteRequest) -> Result<pb::ConnectorServiceDeleteResponse, Error> {
        let key = key(&request.app_id, &request.id, "id")?;
        let mut violations = Violations::new();
        violations.etag("etag", &request.etag);
        violations.into_result()?;
        let expected_etag = (!request.etag.is_empty()).then_some(request.etag.as_str());

        self.registry.delete(&key, expected_etag).await?;

        tracing::debug!("connector deleted");
        Ok(pb::ConnectorServiceDeleteResponse {})
    }

    async fn update_with_scope(
        &self,
        connector: Option<&pb::Connector>,
        update_mask: Option<&prost_types::FieldMask>,
        scope: UpdateScope,
        audit: &mut Audit,
    ) -> Result<pb::ConnectorView, Error> {
        let Some(connector) = connector else {
            return Err(Error::invalid("connector", "is required: it names the connector to update"));
        };
        record_connector_ids(connector);
        audit.target(&connector.app_id, &connector.id);
        let mut violations = Violations::new();
        violations.id("connector.app_id", &connector.app_id);
        violations.id("connector.id", &connector.id);
        violations.etag("connector.etag", &connector.etag);
        violations.into_result()?;
        let key = ConnectorKey::new(&connector.app_id, &connector.id);
        let patch = build_patch(connector, update_mask, scope, &self.config_check())?;
        audit.changed(patch.changed_fields());
        let expected_etag = (!connector.etag.is_empty()).then_some(connector.etag.as_str());

        let updated = self.registry.update(&key, &patch, expected_etag).await?;

        tracing::debug!(revision = updated.revision, "connector updated");
        Ok(view(updated, &self.config_types))
    }
}

pub(super) fn key(app_id: &str, id: &str, id_field: &str) -> Result<ConnectorKey, Error> {
    let mut violations = Violations::new();
    violations.id("app_id", app_id);
    violations.id(id_field, id);
    violations.into_result()?;
    Ok(ConnectorKey::new(app_id, id))
}

#[tonic::async_trait]
impl ConnectorService for ConnectorApi {
    #[tracing::instrument(name = "Create", skip_all, fields(app_id = %request.get_ref().app_id, connector_id))]
    async fn create(
        &self,
        request: Request<pb::ConnectorServiceCreateRequest>,
    ) -> Result<Response<pb::ConnectorServiceCreateResponse>, Status> {
        let mut audit = Audit::start("Create", &request);
        let request = request.into_inner();
        let result = self.handle_create(request, &mut audit).await;
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "CreateDelegated", skip_all, fields(app_id = %request.get_ref().app_id, connector_id))]
    async fn create_delegated(
        &self,
        request: Request<pb::ConnectorServiceCreateDelegatedRequest>,
    ) -> Result<Response<pb::ConnectorServiceCreateDelegatedResponse>, Status> {
        let mut audit = Audit::start("CreateDelegated", &request);
        let request = request.into_inner();
        let result = self.handle_create_delegated(request, &mut audit).await;
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "Get", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().id))]
    async fn get(&self, request: Request<pb::ConnectorServiceGetRequest>) -> Result<Response<pb::ConnectorServiceGetResponse>, Status> {
        let request = request.into_inner();
        let key = key(&request.app_id, &request.id, "id").map_err(to_status)?;

        let connector = self.registry.get(&key).await.map_err(to_status)?;

        tracing::debug!("connector read");
        Ok(Response::new(pb::ConnectorServiceGetResponse {
            connector_view: Some(view(connector, &self.config_types)),
            expanded: Vec::new(),
        }))
    }

    #[tracing::instrument(name = "List", skip_all, fields(app_id = %request.get_ref().app_id))]
    async fn list(&self, request: Request<pb::ConnectorServiceListRequest>) -> Result<Response<pb::ConnectorServiceListResponse>, Status> {
        let request = request.into_inner();
        let query = list_query(&request).map_err(to_status)?;

        let page = self.registry.list(&query).await.map_err(to_status)?;

        let (list, next_after_id) = fit_page(page.connectors, page.next_after_id, &self.config_types);
        tracing::debug!(count = list.len(), "connectors listed");
        let next_page_token = next_after_id
            .map(|after_id| page_token::encode(&page_token::connector_scope(&query.app_id, query.include_deleted), &after_id))
            .unwrap_or_default();
        Ok(Response::new(pb::ConnectorServiceListResponse { list, next_page_token, expanded: Vec::new() }))
    }

    #[tracing::instrument(name = "Update", skip_all, fields(app_id, connector_id))]
    async fn update(
        &self,
        request: Request<pb::ConnectorServiceUpdateRequest>,
    ) -> Result<Response<pb::ConnectorServiceUpdateResponse>, Status> {
        let mut audit = Audit::start("Update", &request);
        let request = request.into_inner();
        let result = self
            .update_with_scope(request.connector.as_ref(), request.update_mask.as_ref(), UpdateScope::Full, &mut audit)
            .await
            .map(|view| pb::ConnectorServiceUpdateResponse { connector_view: Some(view), expanded: Vec::new() });
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "UpdateDelegated", skip_all, fields(app_id, connector_id))]
    async fn update_delegated(
        &self,
        request: Request<pb::ConnectorServiceUpdateDelegatedRequest>,
    ) -> Result<Response<pb::ConnectorServiceUpdateDelegatedResponse>, Status> {
        let mut audit = Audit::start("UpdateDelegated", &request);
        let request = request.into_inner();
        let result = self
            .update_with_scope(request.connector.as_ref(), request.update_mask.as_ref(), UpdateScope::Delegated, &mut audit)
            .await
            .map(|view| pb::ConnectorServiceUpdateDelegatedResponse { connector_view: Some(view), expanded: Vec::new() });
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "Delete", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().id))]
    async fn delete(
        &self,
        request: Request<pb::ConnectorServiceDeleteRequest>,
    ) -> Result<Response<pb::ConnectorServiceDeleteResponse>, Status> {
        let mut audit = Audit::start("Delete", &request);
        let request = request.into_inner();
        audit.target(&request.app_id, &request.id);
        audit.changed(["deleted_at"]);
        let result = self.handle_delete(request).await;
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "GetCredentials", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id))]
    async fn get_credentials(
        &self,
        request: Request<pb::ConnectorServiceGetCredentialsRequest>,
    ) -> Result<Response<pb::ConnectorServiceGetCredentialsResponse>, Status> {
        self.handle_get_credentials(request.into_inner()).await.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "RotateCredential", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id))]
    async fn rotate_credential(
        &self,
        request: Request<pb::ConnectorServiceRotateCredentialRequest>,
    ) -> Result<Response<pb::ConnectorServiceRotateCredentialResponse>, Status> {
        let mut audit = Audit::start("RotateCredential", &request);
        audit.target(&request.get_ref().app_id, &request.get_ref().connector_id);
        audit.changed(["credentials"]);
        let result = self.handle_rotate_credential(request.into_inner()).await;
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "RevokeCredential", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id))]
    async fn revoke_credential(
        &self,
        request: Request<pb::ConnectorServiceRevokeCredentialRequest>,
    ) -> Result<Response<pb::ConnectorServiceRevokeCredentialResponse>, Status> {
        let mut audit = Audit::start("RevokeCredential", &request);
        audit.target(&request.get_ref().app_id, &request.get_ref().connector_id);
        audit.changed(["credentials.deleted_at"]);
        let result = self.handle_revoke_credential(request.into_inner()).await;
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "ListCredentials", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id))]
    async fn list_credentials(
        &self,
        request: Request<pb::ConnectorServiceListCredentialsRequest>,
    ) -> Result<Response<pb::ConnectorServiceListCredentialsResponse>, Status> {
        self.handle_list_credentials(request.into_inner()).await.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "ForceSync", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id))]
    async fn force_sync(
        &self,
        request: Request<pb::ConnectorServiceForceSyncRequest>,
    ) -> Result<Response<pb::ConnectorServiceForceSyncResponse>, Status> {
        let mut audit = Audit::start("ForceSync", &request);
        audit.target(&request.get_ref().app_id, &request.get_ref().connector_id);
        audit.changed(["syncs"]);
        let result = self.handle_force_sync(request.into_inner()).await;
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "PauseSync", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id))]
    async fn pause_sync(
        &self,
        request: Request<pb::ConnectorServicePauseSyncRequest>,
    ) -> Result<Response<pb::ConnectorServicePauseSyncResponse>, Status> {
        let mut audit = Audit::start("PauseSync", &request);
        audit.target(&request.get_ref().app_id, &request.get_ref().connector_id);
        audit.changed(["status", "can_resume_sync", "sync_disabled_at", "sync_disabled_category", "sync_disabled_reason"]);
        let result = self.handle_pause_sync(request.into_inner()).await;
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "ResumeSync", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id))]
    async fn resume_sync(
        &self,
        request: Request<pb::ConnectorServiceResumeSyncRequest>,
    ) -> Result<Response<pb::ConnectorServiceResumeSyncResponse>, Status> {
        let mut audit = Audit::start("ResumeSync", &request);
        audit.target(&request.get_ref().app_id, &request.get_ref().connector_id);
        audit.changed(["status", "can_resume_sync", "sync_disabled_at", "sync_disabled_category", "sync_disabled_reason", "syncs"]);
        let result = self.handle_resume_sync(request.into_inner()).await;
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "UpdateConnectorSchedule", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id))]
    async fn update_connector_schedule(
        &self,
        request: Request<pb::ConnectorServiceUpdateConnectorScheduleRequest>,
    ) -> Result<Response<pb::ConnectorServiceUpdateConnectorScheduleResponse>, Status> {
        let mut audit = Audit::start("UpdateConnectorSchedule", &request);
        audit.target(&request.get_ref().app_id, &request.get_ref().connector_id);
        audit.changed(["schedule"]);
        let result = self.handle_update_schedule(request.into_inner()).await;
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "ConfirmSyncValid", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id))]
    async fn confirm_sync_valid(
        &self,
        request: Request<pb::ConnectorServiceConfirmSyncValidRequest>,
    ) -> Result<Response<pb::ConnectorServiceConfirmSyncValidResponse>, Status> {
        let mut audit = Audit::start("ConfirmSyncValid", &request);
        audit.target(&request.get_ref().app_id, &request.get_ref().connector_id);
        audit.changed(["syncs"]);
        let result = self.handle_confirm_sync_valid(request.into_inner()).await;
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "GetConnectorSyncDownloadURL", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id))]
    async fn get_connector_sync_download_url(
        &self,
        request: Request<pb::ConnectorServiceGetConnectorSyncDownloadUrlRequest>,
    ) -> Result<Response<pb::ConnectorServiceGetConnectorSyncDownloadUrlResponse>, Status> {
        self.handle_download_url(request.into_inner()).await.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "GetSync", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id))]
    async fn get_sync(
        &self,
        request: Request<pb::ConnectorServiceGetSyncRequest>,
    ) -> Result<Response<pb::ConnectorServiceGetSyncResponse>, Status> {
        self.handle_get_sync(request.into_inner()).await.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "ListSyncs", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id))]
    async fn list_syncs(
        &self,
        request: Request<pb::ConnectorServiceListSyncsRequest>,
    ) -> Result<Response<pb::ConnectorServiceListSyncsResponse>, Status> {
        self.handle_list_syncs(request.into_inner()).await.map(Response::new).map_err(to_status)
    }

    #[tracing::instrument(name = "CancelSync", skip_all, fields(app_id = %request.get_ref().app_id, connector_id = %request.get_ref().connector_id))]
    async fn cancel_sync(
        &self,
        request: Request<pb::ConnectorServiceCancelSyncRequest>,
    ) -> Result<Response<pb::ConnectorServiceCancelSyncResponse>, Status> {
        let mut audit = Audit::start("CancelSync", &request);
        audit.target(&request.get_ref().app_id, &request.get_ref().connector_id);
        audit.changed(["syncs"]);
        let result = self.handle_cancel_sync(request.into_inner()).await;
        audit.finish(&result);
        result.map(Response::new).map_err(to_status)
    }
}

/// Converts a page into views, cutting it short where the response would pass
/// [`MAX_LIST_RESPONSE_BYTES`]; the next page then starts after the last view sent.
fn fit_page(
    connectors: Vec<crate::domain::Connector>,
    next_after_id: Option<String>,
    config_types: &ConfigTypes,
) -> (Vec<pb::ConnectorView>, Option<String>) {
    let mut views: Vec<pb::ConnectorView> = Vec::with_capacity(connectors.len());
    let mut total_bytes = 0;
    for connector in connectors {
        let last_sent = views.last().and_then(|view| view.connector.as_ref()).map(|sent| sent.id.clone());
        let view = view(connector, config_types);
        // Each list entry costs its length plus a tag and a length prefix.
        total_bytes += prost::Message::encoded_len(&view) + 8;
        if total_bytes > MAX_LIST_RESPONSE_BYTES && last_sent.is_some() {
            return (views, last_sent);
        }
        views.push(view);
    }
    (views, next_after_id)
}

fn record_connector_ids(connector: &pb::Connector) {
    let span = tracing::Span::current();
    span.record("app_id", connector.app_id.as_str());
    span.record("connector_id", connector.id.as_str());
}

/// Converts a requested page size: 0 means the default, larger than the maximum is capped.
pub(super) fn page_size(field: &str, requested: i32, violations: &mut Violations) -> usize {
    if requested < 0 {
        violations.add(field, format!("{requested} is negative; use 0 for the default of {DEFAULT_PAGE_SIZE}"));
    }
    match usize::try_from(requested).unwrap_or(0) {
        0 => DEFAULT_PAGE_SIZE,
        size => size.min(MAX_PAGE_SIZE),
    }
}

fn list_query(request: &pb::ConnectorServiceListRequest) -> Result<ListQuery, Error> {
    let mut violations = Violations::new();
    violations.id("app_id", &request.app_id);
    let page_size = page_size("page_size", request.page_size, &mut violations);
    violations.into_result()?;

    let after_id = if request.page_token.is_empty() {
        None
    } else {
        let scope = page_token::connector_scope(&request.app_id, request.show_deleted);
        let after_id = page_token::decode(&request.page_token, &scope).map_err(|error| Error::invalid("page_token", error.to_string()))?;
        Some(after_id)
    };
    Ok(ListQuery { app_id: request.app_id.clone(), after_id, page_size, include_deleted: request.show_deleted })
}
