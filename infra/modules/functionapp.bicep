// The Function App on the Flex Consumption plan: Python 3.11 on Linux, one user-assigned
// identity for everything (storage, the deployment package, Key Vault references, Application
// Insights), HTTPS only with TLS 1.2 at least, and no FTP or basic-auth publishing: code arrives
// through the deployment container (one deploy), signed in with Entra ID.

@description('Function App name (globally unique: it is the host name).')
param name string

@description('Flex Consumption plan name.')
param planName string

param location string
param tags object

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('URL of the blob container the app pulls its package from.')
param deploymentContainerUrl string

@description('The app settings, name to value: all of them (Flex Consumption adds none of its own).')
param appSettings object

@description('Upper bound of instances (Flex Consumption allows 40-1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption offers zone redundancy in some regions only; the app keeps no state (it lives in geo-redundant storage) and the plan replaces lost instances
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: the booking platforms, administrators and (planned) Microsoft Graph notifications reach the app over the internet; every route is authenticated (HMAC signature, function key plus admin key)
  // checkov:skip=CKV_AZURE_17: callers authenticate per organization with HMAC signatures or admin keys; a client certificate would be one credential for every organization, and Graph notifications cannot present one
  // checkov:skip=CKV_AZURE_212: Flex Consumption starts instances on demand and scales to zero; no instance is kept warm by design (cost), queue work waits for the next instance
  // checkov:skip=CKV_AZURE_213: calbridge has no health route (an anonymous one would be one more surface); the Flex Consumption platform replaces failing instances itself
  name: name
  location: location
  // azd finds the app to deploy `services.api` (azure.yaml) to by this tag.
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references in the app settings resolve as this identity (there is no
    // system-assigned one to fall back to).
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: setting.value
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No FTP and no basic-auth publishing credentials: the az CLI and azd deploy to Flex
// Consumption with an Entra ID token.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output id string = app.id
output url string = 'https://${app.properties.defaultHostName}'
