// calbridge's storage account: its state tables, its work queues (each with the `-poison` queue
// the Functions host moves a message to after maxDequeueCount tries), the Functions host's own
// blobs, and the container Flex Consumption deploys the app package from. Reached only with
// Entra ID (managed identity, operators' sign-in): shared keys are off.

@description('Storage account name (3-24 lower-case letters and digits, globally unique).')
param name string

param location string
param tags object

@description('Replication. Geo-redundant by default: the tables are calbridge\'s only record of what it wrote to Exchange, so they outlive the loss of a region. Standard_GZRS adds zone redundancy where the region has zones.')
@allowed([
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
  'Standard_ZRS'
  'Standard_LRS'
])
param skuName string = 'Standard_GRS'

@description('Queue base names; each is created as <queuePrefix><name> and <queuePrefix><name>-poison.')
param queueNames array

@description('CALBRIDGE_QUEUE_PREFIX, the same value the app reads.')
param queuePrefix string

@description('Table base names; each is created as <tablePrefix><name>.')
param tableNames array

@description('CALBRIDGE_TABLE_PREFIX, the same value the app reads.')
param tablePrefix string

@description('Blob container the Flex Consumption app pulls its deployment package from.')
param deploymentContainerName string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: the Flex Consumption app reaches the account over its public endpoint and has no fixed outbound addresses without a virtual network, so a default Deny would lock it out; every request still needs an Entra ID token (shared keys are off)
  // checkov:skip=CKV_AZURE_59: public network access stays on for the same reason; no anonymous access (allowBlobPublicAccess false) and no shared keys
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: '${queuePrefix}${queueName}'
  }
]

// The host creates a poison queue on first use; creating it here lets operators watch and
// replay it before the first failure, with the data-plane roles this deployment grants.
resource poisonQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: '${queuePrefix}${queueName}-poison'
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for tableName in tableNames: {
    parent: tableService
    name: '${tablePrefix}${tableName}'
  }
]

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
output deploymentContainerUrl string = '${account.properties.primaryEndpoints.blob}${deploymentContainer.name}'
