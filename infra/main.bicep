// calbridge on Azure, in one resource group: a Function App on the Flex Consumption plan
// (Python 3.11) running as one user-assigned identity; its storage account (state tables, work
// queues and their poison queues, the host's blobs, the deployment container) reached with that
// identity only; a Key Vault (RBAC) for organization and connection secrets; Application
// Insights on a Log Analytics workspace.
//
// Deployed by `azd up` (azure.yaml, main.parameters.json) or by infra/deploy.sh with
// `az deployment group create`. Plain resources where checkov should see the security settings
// (storage, Key Vault, the app, the role assignments); Azure Verified Modules for the identity
// and the monitoring resources (see infra/README.md).

targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('Environment name (azd\'s AZURE_ENV_NAME): tags every resource and seeds the unique part of the names.')
param environmentName string

@description('Region of every resource; it must offer the Flex Consumption plan.')
param location string = resourceGroup().location

@minLength(1)
@maxLength(30)
@description('CALBRIDGE_QUEUE_PREFIX: every queue is <prefix><name>. Never empty (queue triggers bind %CALBRIDGE_QUEUE_PREFIX%<name>); lower-case letters, digits and single hyphens.')
param queuePrefix string = 'calbridge-'

@maxLength(40)
@description('CALBRIDGE_TABLE_PREFIX: every table is <prefix><Table>. Letters and digits, starting with a letter, or empty.')
param tablePrefix string = ''

@description('CALBRIDGE_ALLOW_PRIVATE_EXCHANGE_NETWORKS: administrators may point EWS connections at private addresses (only useful once the app is integrated into a virtual network that reaches them).')
param allowPrivateExchangeNetworks bool = false

@description('CALBRIDGE_GRAPH_URL: Microsoft Graph for Graph connections (another value for a national cloud).')
param graphUrl string = 'https://graph.microsoft.com/v1.0'

@description('CALBRIDGE_GRAPH_AUTHORITY: the token authority of Graph connections.')
param graphAuthority string = 'login.microsoftonline.com'

@minValue(1024)
@description('CALBRIDGE_MAX_REQUEST_BYTES: largest request body the HTTP functions accept.')
param maxRequestBytes int = 65536

@minValue(30)
@maxValue(900)
@description('CALBRIDGE_SIGNATURE_TOLERANCE_SECONDS: how old or new a signed booking-platform request may be.')
param signatureToleranceSeconds int = 300

@description('Key Vault secret holding the operator key (CALBRIDGE_ADMIN_KEY, opens every organization). While it does not exist, only organizations\' own admin keys open the admin API.')
param operatorKeySecretName string = 'calbridge-admin-key'

@description('Principal id of the operator who onboards organizations (azd: the signed-in user). Empty: no operator roles.')
param operatorPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

@minValue(40)
@maxValue(1000)
@description('Upper bound of Flex Consumption instances: 40 is the lowest the plan accepts.')
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@allowed([
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
  'Standard_ZRS'
  'Standard_LRS'
])
param storageSkuName string = 'Standard_GRS'

@allowed([
  30
  60
  90
  120
  180
  270
  365
  550
  730
])
@description('How long logs and telemetry are kept (days).')
param logRetentionDays int = 30

// The queues calbridge's code names (shared/queues/names.py): each is created with its
// -poison twin. Add a queue here when the code gains one (tests/infra checks both agree).
var queueNames = [
  'appointment-changes'
  'mailbox-sync'
  'mailbox-subscriptions'
  'webhook-deliveries'
]

// The tables of calbridge's repositories (shared/store/repositories.py, each `table_name`).
var tableNames = [
  'Connections'
  'Mailboxes'
  'Appointments'
  'EventMap'
  'BusyBlocks'
  'Subscriptions'
  'Outbox'
  'ParkedChanges'
  'DeadLetters'
  'ApplyProblems'
  'OrgSettings'
  'MailboxItems'
  'AppointmentUids'
  'CallSlots'
]

var token = toLower(uniqueString(resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
  application: 'calbridge'
}
var names = {
  identity: 'id-calbridge-${token}'
  logAnalytics: 'log-calbridge-${token}'
  appInsights: 'appi-calbridge-${token}'
  storage: 'stcalbridge${token}'
  keyVault: 'kv-calbridge-${take(token, 11)}'
  plan: 'plan-calbridge-${token}'
  functionApp: 'func-calbridge-${token}'
}
var deploymentContainerName = 'deployment-package'

module identity 'br/public:avm/res/managed-identity/user-assigned-identity:0.6.0' = {
  name: 'calbridge-identity'
  params: {
    name: names.identity
    location: location
    tags: tags
    enableTelemetry: false
  }
}

module logAnalytics 'br/public:avm/res/operational-insights/workspace:0.16.1' = {
  name: 'calbridge-log-analytics'
  params: {
    name: names.logAnalytics
    location: location
    tags: tags
    dataRetention: logRetentionDays
    enableTelemetry: false
  }
}

module appInsights 'br/public:avm/res/insights/component:0.8.0' = {
  name: 'calbridge-app-insights'
  params: {
    name: names.appInsights
    location: location
    tags: tags
    workspaceResourceId: logAnalytics.outputs.resourceId
    // Telemetry is accepted only with an Entra ID token (the app's identity).
    disableLocalAuth: true
    disableIpMasking: false
    retentionInDays: logRetentionDays
    enableTelemetry: false
  }
}

module storage 'modules/storage.bicep' = {
  name: 'calbridge-storage'
  params: {
    name: names.storage
    location: location
    tags: tags
    skuName: storageSkuName
    queueNames: queueNames
    queuePrefix: queuePrefix
    tableNames: tableNames
    tablePrefix: tablePrefix
    deploymentContainerName: deploymentContainerName
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'calbridge-key-vault'
  params: {
    name: names.keyVault
    location: location
    tags: tags
    logAnalyticsWorkspaceId: logAnalytics.outputs.resourceId
  }
}

// Everything shared/config.Settings reads in Azure, and the host's own settings. No secrets: the
// operator key is a Key Vault reference. Never CALBRIDGE_ALLOW_LOOPBACK_EXCHANGE (local runs
// against the simulator only) nor CALBRIDGE_GRAPH_CA_BUNDLE (the simulator's CA), and no
// AzureWebJobsStorage connection string: the account refuses shared keys.
var appSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
  AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  CALBRIDGE_KEY_VAULT_URL: keyVault.outputs.uri
  CALBRIDGE_ADMIN_KEY: '@Microsoft.KeyVault(VaultName=${keyVault.outputs.name};SecretName=${operatorKeySecretName})'
  CALBRIDGE_QUEUE_PREFIX: queuePrefix
  CALBRIDGE_TABLE_PREFIX: tablePrefix
  CALBRIDGE_MAX_REQUEST_BYTES: string(maxRequestBytes)
  CALBRIDGE_SIGNATURE_TOLERANCE_SECONDS: string(signatureToleranceSeconds)
  CALBRIDGE_ALLOW_PRIVATE_EXCHANGE_NETWORKS: allowPrivateExchangeNetworks ? 'true' : 'false'
  CALBRIDGE_GRAPH_URL: graphUrl
  CALBRIDGE_GRAPH_AUTHORITY: graphAuthority
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'calbridge-function-app'
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: tags
    identityId: identity.outputs.resourceId
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    appSettings: appSettings
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
}

module roles 'modules/roles.bicep' = {
  name: 'calbridge-roles'
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    appInsightsName: appInsights.outputs.name
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

// azd keeps these in the environment (`azd env get-values`); deploy.sh prints them.
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_URL string = functionApp.outputs.url
output FUNCTIONS_API_URL string = '${functionApp.outputs.url}/api'
// Where Graph posts an organization's change and lifecycle notifications (the URLs its
// subscriptions name as notificationUrl and lifecycleNotificationUrl): these, followed by
// /{org}. calbridge builds them itself from WEBSITE_HOSTNAME (or CALBRIDGE_PUBLIC_URL).
output GRAPH_NOTIFICATION_URL string = '${functionApp.outputs.url}/api/graph/notifications'
output GRAPH_LIFECYCLE_URL string = '${functionApp.outputs.url}/api/graph/lifecycle'
output KEY_VAULT_NAME string = keyVault.outputs.name
output KEY_VAULT_URL string = keyVault.outputs.uri
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output CALBRIDGE_QUEUE_PREFIX string = queuePrefix
output CALBRIDGE_TABLE_PREFIX string = tablePrefix
output APPLICATION_INSIGHTS_NAME string = appInsights.outputs.name
